"""A pool's slot goes to one step at a time: a correction of how Dagster 1.13 claims a slot.

Dagster's ``SqlEventLogStorage._claim_concurrency_slot`` reads a free slot with ``SELECT ... FOR
UPDATE SKIP LOCKED`` and then writes the step into it by its id alone. On PostgreSQL the event log's
connection autocommits each statement, so the row lock ends with the read: two steps that read the
slot free before either writes both write it, both are told CLAIMED, and two trainings run on a
pool of one. Dagster reaches that point when two runs ask for the pool within milliseconds: its
assignment of pending steps counts free slots without a lock, so both steps are assigned. CI saw it
once, two CLI materializations starting their trainings 4 ms apart
(``tests/test_postgres_instance.py``).

:func:`claim_a_free_slot` writes the step into a slot only while the slot is still free (``step_key
IS NULL`` in the UPDATE itself), which PostgreSQL re-checks on the row's newest version and SQLite
runs alone: the step that loses is told BLOCKED, stays assigned and takes the slot once it is freed,
the way Dagster retries any blocked claim. :func:`claim_each_slot_once` puts it in place once, when
the Definitions are built, so it runs in every run worker. ``tests/test_postgres_instance.py``
replays the two claims against a real server with Dagster's own method and with this one; once
Dagster's own gives the slot to one step only, the correction can go.
"""

from __future__ import annotations

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._utils.concurrency import ConcurrencySlotStatus

DAGSTERS_OWN_CLAIM = SqlEventLogStorage._claim_concurrency_slot  # the one corrected


def claim_a_free_slot(storage: SqlEventLogStorage, concurrency_key: str, run_id: str, step_key: str):
    """Give ``step_key`` of ``run_id`` a slot of the pool that no step holds, if one is still free."""
    slots = ConcurrencySlotsTable.c
    free = db.and_(slots.concurrency_key == concurrency_key, slots.step_key.is_(None), slots.deleted.is_(False))
    with storage.index_connection() as conn:
        for (slot_id,) in conn.execute(db.select(slots.id).where(free).order_by(slots.id)).fetchall():
            take = ConcurrencySlotsTable.update().where(db.and_(slots.id == slot_id, slots.step_key.is_(None)))
            if conn.execute(take.values(run_id=run_id, step_key=step_key)).rowcount:
                return ConcurrencySlotStatus.CLAIMED
    return ConcurrencySlotStatus.BLOCKED  # every slot read free was taken meanwhile, or none was free


def claim_each_slot_once() -> None:
    """Put :func:`claim_a_free_slot` in place of Dagster 1.13's claim (module docstring); idempotent."""
    SqlEventLogStorage._claim_concurrency_slot = claim_a_free_slot
