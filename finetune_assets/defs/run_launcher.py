"""Dagster's local run launcher plus a health check, so run monitoring marks dead runs failed.

Dagster's ``DefaultRunLauncher`` starts runs as local processes but cannot tell run monitoring
whether such a process still lives, so a run whose process was killed (out of memory, a reboot,
``kill -9``) stays STARTED forever and blocks whatever waits on it. This launcher answers: the run
is alive while the process that started it (the pid of its RUN_START event) exists and is older
than the run (a pid reused by a new process does not count). It judges only runs tagged
``finetune_assets/host`` with this machine's name (the recipe assets tag their runs, from their
first step on); any other run, and a run that has not tagged itself yet, is left running: Dagster's
run monitoring marks failed every run whose worker is not reported running, an unknown one included,
so "cannot tell" is reported as running, as Dagster's own launcher, which checks nothing, leaves it.
``dagster_home/dagster.yaml`` names this class and turns run monitoring on; the daemon that
``dagster dev`` starts polls it.
"""

import socket
from collections.abc import Callable

import psutil
from dagster import DagsterEventType, DagsterInstance, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

HOST_TAG = "finetune_assets/host"


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        health = run_process_health(run, lambda: self._instance)
        if health.status == WorkerStatus.UNKNOWN:  # not ours to judge: Dagster would fail it
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"left running: {health.msg}")
        return health


def run_process_health(run, instance: Callable[[], DagsterInstance]) -> CheckRunHealthResult:
    """Whether the process that started ``run`` on this machine still lives (RUNNING), is gone
    (FAILED), or cannot be told (UNKNOWN: another machine's run, or no process started yet).
    ``instance`` gives the instance, asked only for a run of this machine."""
    if run.tags.get(HOST_TAG) != socket.gethostname():
        return CheckRunHealthResult(WorkerStatus.UNKNOWN, "not a run this machine can check")
    started = instance().get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    if not started or started[0].event_log_entry.dagster_event.pid is None:
        return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has not started a process yet")
    entry = started[0].event_log_entry
    pid = entry.dagster_event.pid
    try:
        process = psutil.Process(pid)
        alive = process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= entry.timestamp + 1
    except psutil.Error:
        alive = False
    if alive:
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {pid} is running")
    return CheckRunHealthResult(WorkerStatus.FAILED, f"the process that ran it (pid {pid}) is gone")
