"""The local Dagster instance as shipped: storage created once at setup, so concurrent runs on a
fresh home succeed, and run monitoring that marks a killed run failed."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.launcher import WorkerStatus

from finetune_assets.defs.run_launcher import HOST_TAG, LocalRunLauncher

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import dagster as dg

    @dg.asset
    def slow():
        Path(sys.argv[1]).touch()  # the run has started
        time.sleep(float(sys.argv[2]))

    tags = {"finetune_assets/host": sys.argv[3]} if sys.argv[3] else {}  # none: not tagged yet
    result = dg.materialize([slow], instance=dg.DagsterInstance.get(), tags=tags)
    print("run", result.run_id, result.success)
""")


@pytest.fixture(scope="module")
def fresh_home(tmp_path_factory) -> Iterator[Path]:
    """A new DAGSTER_HOME set up the way scripts/setup.sh and .ci/run set theirs up."""
    home = tmp_path_factory.mktemp("dagster") / "home"
    subprocess.run(
        ["bash", str(REPO / "scripts" / "init_dagster_home.sh"), str(home)],
        check=True,
        env={**os.environ, "DAGSTER": str(VENV_BIN / "dagster")},
    )
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster_home" / "dagster.yaml").read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml names its folders by it
        yield home


def start_run(home: Path, marker: Path, seconds: float, host: str | None = None) -> subprocess.Popen:
    """A run of one asset that touches ``marker`` and sleeps, tagged with ``host`` (default: this
    machine; empty: untagged)."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(marker), str(seconds), socket.gethostname() if host is None else host],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_started(worker: subprocess.Popen, marker: Path) -> None:
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert worker.poll() is None and time.monotonic() < deadline, worker.stdout.read()
        time.sleep(0.2)


def test_concurrent_runs_on_a_fresh_home_all_succeed(fresh_home, tmp_path):
    runs = [start_run(fresh_home, tmp_path / f"started{i}", 0) for i in range(3)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]  # a hang guard
    assert [run.returncode for run in runs] == [0, 0, 0], "\n".join(outputs)
    run_ids = [line.split()[1] for output in outputs for line in output.splitlines() if line.startswith("run ")]
    with DagsterInstance.from_config(str(fresh_home)) as instance:
        assert [instance.get_run_by_id(run_id).status for run_id in run_ids] == [DagsterRunStatus.SUCCESS] * 3


def test_run_monitoring_marks_a_killed_run_failed(fresh_home, tmp_path):
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    marker = tmp_path / "started"
    worker = start_run(fresh_home, marker, 120)
    try:
        wait_until_started(worker, marker)
        with DagsterInstance.from_config(str(fresh_home)) as instance:
            assert instance.run_monitoring_enabled and isinstance(instance.run_launcher, LocalRunLauncher)
            assert instance.run_monitoring_poll_interval_seconds == 30
            started = RunsFilter(statuses=[DagsterRunStatus.STARTED])
            [record] = instance.get_run_records(started)
            monitor_started_run(instance, None, record, logging.getLogger("test"))  # alive: left alone
            assert instance.get_run_by_id(record.dagster_run.run_id).status == DagsterRunStatus.STARTED
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(30)
            [record] = instance.get_run_records(started)  # nobody else marks a killed run
            monitor_started_run(instance, None, record, logging.getLogger("test"))
            run = instance.get_run_by_id(record.dagster_run.run_id)
            assert run.status == DagsterRunStatus.FAILURE
            assert any(
                f"(pid {worker.pid}) is gone" in (entry.message or "") for entry in instance.all_logs(run.run_id)
            )
    finally:
        worker.kill()


def test_runs_this_machine_cannot_judge_are_left_running(fresh_home, tmp_path):
    """Another machine's run, and a run not tagged yet (between its start and its first step), are
    left STARTED by Dagster's run monitoring, which fails every run whose worker is not reported
    running (a scheduled run was failed so, checked in the second before its first step)."""
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    workers = {host: start_run(fresh_home, tmp_path / f"started-{host}", 120, host) for host in ("elsewhere", "")}
    try:
        for host, worker in workers.items():
            wait_until_started(worker, tmp_path / f"started-{host}")
        with DagsterInstance.from_config(str(fresh_home)) as instance:
            records = [
                record
                for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
                if record.dagster_run.tags.get(HOST_TAG) != socket.gethostname()
            ]
            assert {record.dagster_run.tags.get(HOST_TAG) for record in records} == {"elsewhere", None}
            for record in records:
                health = instance.run_launcher.check_run_worker_health(record.dagster_run)
                assert health.status == WorkerStatus.RUNNING and health.msg.startswith("left running: not a run")
                monitor_started_run(instance, None, record, logging.getLogger("test"))
                assert instance.get_run_by_id(record.dagster_run.run_id).status == DagsterRunStatus.STARTED
                instance.report_run_failed(record.dagster_run, "the test ends it")  # no STARTED run left behind
    finally:
        for worker in workers.values():
            worker.kill()


def test_setup_and_ci_create_the_storage_before_any_run():
    assert "bash scripts/init_dagster_home.sh dagster_home" in (REPO / "scripts" / "setup.sh").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index('init_dagster_home.sh "$DAGSTER_HOME"') < ci.index("dagster asset materialize")
