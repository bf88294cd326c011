"""A pool's slot goes to one step at a time, and never stays free while a step waits: two
corrections of how Dagster 1.13 claims a slot.

Dagster queues a step that asks for a pool (``claim_concurrency_slot``): it counts the pool's slots
that no queued step is assigned to, queues the step assigned when one is, and an assigned step then
writes itself into a free slot. Freeing a slot assigns the step that has waited longest. On
PostgreSQL the event log's connection autocommits each statement, so none of these reads holds a
lock past itself, and two races follow:

- **One slot, two steps.** Two runs asking within milliseconds both count the slot unassigned and
  are both assigned. Each then reads the slot free (``SELECT ... FOR UPDATE SKIP LOCKED``, its lock
  gone with the read) and writes its step into it by the slot's id alone: both are told CLAIMED, and
  two trainings run on a pool of one. CI saw it once, two CLI materializations starting their
  trainings 4 ms apart (``tests/test_postgres_instance.py``). :func:`claim_a_free_slot` writes a
  step into a slot only while the slot is still free (``step_key IS NULL`` in the UPDATE itself,
  which PostgreSQL re-checks on the row's newest version and SQLite runs alone): the step that
  loses is told BLOCKED, stays assigned and takes the slot once it is freed.
- **A free slot, a step waiting for it.** A step counts no unassigned slot; the slot is freed before
  the step is queued, so the free assigns nobody; the step is then queued unassigned and waits until
  some other run frees the pool, forever on a quiet machine. :func:`claim_or_take_a_slot_freed_meanwhile`
  assigns the slot when a step waits unassigned beside it, at every claim check (every 5 s at most,
  ``defs/executor.py``).

:func:`claim_each_slot_once` puts both in place once, when the Definitions are built, so they run in
every run worker. ``tests/test_postgres_instance.py`` replays each race step by step against a real
server with Dagster's own methods and with these; once Dagster's own pass, the corrections can go.
"""

from __future__ import annotations

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._utils.concurrency import ConcurrencySlotStatus

DAGSTERS_OWN_CLAIM = SqlEventLogStorage._claim_concurrency_slot  # the write into a slot, corrected
DAGSTERS_OWN_QUEUEING = SqlEventLogStorage.claim_concurrency_slot  # the queueing around it, kept and completed


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


def claim_or_take_a_slot_freed_meanwhile(
    storage: SqlEventLogStorage, concurrency_key: str, run_id: str, step_key: str, priority: int | None = None
):
    """Dagster's claim; where the step still waits unassigned while a slot has no step assigned,
    assign it (to the queue's first step, as a free would) and claim again."""
    status = DAGSTERS_OWN_QUEUEING(storage, concurrency_key, run_id, step_key, priority)
    if status.is_assigned or not storage.has_unassigned_slots(concurrency_key):
        return status
    storage.assign_pending_steps([concurrency_key])
    return DAGSTERS_OWN_QUEUEING(storage, concurrency_key, run_id, step_key, priority)


def claim_each_slot_once() -> None:
    """Put both corrections (module docstring) in place of Dagster 1.13's methods; idempotent."""
    SqlEventLogStorage._claim_concurrency_slot = claim_a_free_slot
    SqlEventLogStorage.claim_concurrency_slot = claim_or_take_a_slot_freed_meanwhile
