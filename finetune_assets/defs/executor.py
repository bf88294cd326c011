"""The executor of every recipe's runs: Dagster's in-process executor, which first creates the
limits of the pools its steps claim and frees the pool slots of runs whose process died, and which
sleeps while a step waits for a pool.

A run whose whole process was killed (a machine crash, the OOM killer taking the Dagster process)
stays STARTED and keeps its slot of the ``training`` pool. The daemon's run monitoring frees it
(``dagster_home/dagster.yaml``), but a CLI materialization (CI, cron) runs without the daemon and
would wait for that slot forever. So before any step claims a slot, :func:`free_dead_runs` marks
failed every run of this machine that holds a slot and whose process is gone (the run launcher's
own health check, :func:`~finetune_assets.defs.run_launcher.run_process_health`) and frees its
slots, saying so in the run's log.

Waiting: Dagster 1.13's ``InstanceConcurrencyContext.interval_to_next_pending_claim_check`` returns
``min(0, ...)``, never a positive number, so the executor's ``sleep_til_ready`` never sleeps and a
step waiting for a slot spins a core at 100 %; and its in-process loop never looks at the SIGTERM or
SIGINT that Dagster captured meanwhile, so a waiting run ignores them.
:func:`sleep_while_waiting_for_a_pool` puts in the intended value, the time until the next claim
check, at most :data:`WAIT_CHECK_SECONDS`, and ends the wait with Dagster's own
``DagsterExecutionInterruptedError`` once a signal was captured (within those seconds). It is a correction of that one method, made once
when the Definitions are built; ``tests/test_faults.py`` fails as soon as Dagster's own method
sleeps, so the correction can go.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from dagster import DagsterEvent, DagsterRunStatus, ExecutorDefinition, in_process_executor
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import EngineEventData
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.executor.base import Executor
from dagster._core.launcher import WorkerStatus
from dagster._utils.interrupts import check_captured_interrupt

from finetune_assets.defs.run_launcher import run_process_health

WAIT_CHECK_SECONDS = 5.0
DAGSTERS_OWN_INTERVAL = InstanceConcurrencyContext.interval_to_next_pending_claim_check  # the one corrected
UNFINISHED = (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING)


def free_dead_runs(instance, this_run_id: str) -> list[str]:
    """Mark failed the runs holding pool slots whose process is gone, free their slots; say which."""
    storage, said = instance.event_log_storage, []
    holders = {
        slot.run_id
        for pool in storage.get_concurrency_keys()
        for slot in storage.get_concurrency_info(pool).claimed_slots
    }
    for run_id in sorted(holders - {this_run_id}):
        run = instance.get_run_by_id(run_id)
        if run is None:
            continue  # a slot claimed outside any run this instance knows: not ours to judge
        if run.status in UNFINISHED:
            health = run_process_health(run, lambda: instance)
            if health.status != WorkerStatus.FAILED:
                continue
            instance.report_run_failed(run, f"marked failed by run {this_run_id}: {health.msg}")
            said.append(f"run {run_id} ({health.msg}) marked failed and its pool slots freed")
        else:
            said.append(f"run {run_id} ended {run.status.value} still holding pool slots: freed")
        storage.free_concurrency_slots_for_run(run_id)
    return said


def create_pool_limits(instance, execution_plan) -> list[str]:
    """Create the default limit of each pool the plan's steps claim, where none exists yet; say which.

    Dagster creates a pool's limit at the first claim of a slot in it. On Postgres, two runs making
    that first claim together collide on the limits table's unique key, and one run fails
    (``UniqueViolation`` in ``initialize_concurrency_limit_to_default``). Made here, before any claim,
    the collision is harmless: the run beside this one made the limit, which is all that is needed.
    """
    storage = instance.event_log_storage
    if instance.global_op_concurrency_default_limit is None:
        return []  # Dagster makes no limit by itself either
    pools = {step.pool for step in execution_plan.get_steps_to_execute_in_topo_order() if step.pool}
    made = []
    for pool in sorted(pools - storage.get_concurrency_keys()):
        try:
            storage.initialize_concurrency_limit_to_default(pool)
        except Exception:
            if pool not in storage.get_concurrency_keys():  # not made beside us: a real failure
                raise
        made.append(f"pool {pool}: its default limit created before the first claim")
    return made


class FreesDeadRunsFirst(Executor):
    """An executor that frees dead runs' slots (:func:`free_dead_runs`), then executes as ``inner``."""

    def __init__(self, inner: Executor):
        self.inner = inner

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[DagsterEvent]:
        instance = plan_context.instance
        for message in [*create_pool_limits(instance, execution_plan), *free_dead_runs(instance, plan_context.run_id)]:
            yield DagsterEvent.engine_event(plan_context, message, EngineEventData())
        yield from self.inner.execute(plan_context, execution_plan)


def _interval_to_next_pending_claim_check(self) -> float:
    if not self._pending_claims:
        return 0.0
    if check_captured_interrupt():  # SIGTERM or SIGINT while waiting: the in-process loop never looks
        raise DagsterExecutionInterruptedError("interrupted while waiting for a pool slot")
    waits = [ready_at - time.time() for ready_at in self._pending_timeouts.values()]
    return max(0.0, min([WAIT_CHECK_SECONDS, *waits]))


def sleep_while_waiting_for_a_pool() -> None:
    """Correct Dagster 1.13's claim-check interval (see the module's docstring); idempotent."""
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = _interval_to_next_pending_claim_check


executor_that_frees_dead_runs = ExecutorDefinition(
    name="in_process",
    config_schema=in_process_executor.config_schema,
    executor_creation_fn=lambda init_context: FreesDeadRunsFirst(
        in_process_executor.executor_creation_fn(init_context)
    ),
    description="Execute all steps in one process, after freeing the pool slots of runs whose process died.",
)
