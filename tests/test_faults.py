"""No run stuck behind a dead one, from the command line and without the daemon (CI, cron).

A CLI materialization whose whole process group is killed mid-training stays STARTED and holds the
``training`` pool's only slot. The next CLI materialization of the recipe marks it failed, frees
the slot and resumes the training from its checkpoint. A run waiting for a slot that a live run
holds sleeps (no core spun) and ends within seconds on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from test_training_process import project, tiny_recipe

from finetune_assets.defs import executor

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
BLOCKED = "blocked by limit for pool training"
CHILD = "finetune_assets.training.run"


@pytest.fixture
def cli_project(tmp_path, tiny_bert):
    """A recipe folder with a tiny recipe (36 optimizer steps, a checkpoint every 6), a fresh
    instance with the project's dagster.yaml, and the environment a CLI run needs."""
    recipe = tiny_recipe(tiny_bert)
    recipe["training"]["max_length"] = 64  # slower steps: time to kill between checkpoints
    recipes = project(tmp_path, "crash", recipe)
    home = tmp_path / "home"
    subprocess.run(["bash", str(REPO / "scripts" / "init_dagster_home.sh"), str(home)], check=True,
                   env={**os.environ, "DAGSTER": DAGSTER})  # fmt: skip
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FINETUNE_RECIPES": str(recipes),
        "FINETUNE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    return tmp_path, env


def start(env: dict, log: Path) -> subprocess.Popen:
    """``dagster asset materialize`` of the whole recipe, in its own process group."""
    command = [DAGSTER, "asset", "materialize", "-m", "finetune_assets.definitions", "--select", "group:crash"]
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds:.0f}s for {what}")


def instance_of(env: dict) -> DagsterInstance:
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    return DagsterInstance.get()


def test_dagsters_claim_check_interval_still_needs_the_correction():
    """Dagster 1.13 returns min(0, ...) here, so a waiting step never sleeps. When the first assertion
    fails, Dagster sleeps by itself and ``sleep_while_waiting_for_a_pool`` can go."""
    waiting = object.__new__(InstanceConcurrencyContext)
    waiting._pending_claims, waiting._pending_timeouts = {"train"}, {"train": time.time() + 3}
    assert executor.DAGSTERS_OWN_INTERVAL(waiting) <= 0, "Dagster now sleeps by itself"
    executor.sleep_while_waiting_for_a_pool()
    assert 2 < waiting.interval_to_next_pending_claim_check() <= 3
    waiting._pending_timeouts["train"] = time.time() + 60
    assert waiting.interval_to_next_pending_claim_check() == executor.WAIT_CHECK_SECONDS


def test_a_waiting_run_sleeps_and_ends_on_sigterm(cli_project, monkeypatch):
    root, env = cli_project
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    instance = instance_of(env)  # kept: the storage refers to it weakly
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("training")
    storage.claim_concurrency_slot("training", "a-live-run-elsewhere", "its-training")  # unknown here: kept
    waiting = start(env, root / "waiting.log")
    wait_for(lambda: BLOCKED in (root / "waiting.log").read_text(), 180, "the run to wait for the slot")
    process = psutil.Process(waiting.pid)
    before, started = sum(process.cpu_times()[:2]), time.monotonic()
    time.sleep(2 * executor.WAIT_CHECK_SECONDS)
    busy = (sum(process.cpu_times()[:2]) - before) / (time.monotonic() - started)
    assert busy < 0.2, f"the waiting run used {busy:.0%} of a core"
    sent = time.monotonic()
    os.killpg(waiting.pid, signal.SIGTERM)
    waiting.wait(30)
    assert time.monotonic() - sent < 10, "SIGTERM ends a waiting run within seconds"
    storage.free_concurrency_slot_for_step("a-live-run-elsewhere", "its-training")


def test_a_killed_run_is_marked_failed_and_the_next_cli_run_resumes_its_training(cli_project, monkeypatch):
    root, env = cli_project
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    first = start(env, root / "first.log")
    checkpoints = root / "artifacts" / "crash" / "checkpoints"
    wait_for(lambda: any(checkpoints.glob("*/checkpoint-*/trainer_state.json")), 300, "a complete checkpoint")
    os.killpg(first.pid, signal.SIGKILL)  # the whole Dagster process group: run, step and training
    first.wait(30)
    instance = instance_of(env)
    [dead] = instance.get_runs()
    assert dead.status == DagsterRunStatus.STARTED, "nothing marked the killed run: it holds its slot"
    assert instance.event_log_storage.get_concurrency_info("training").claimed_slots
    started = time.monotonic()
    second = start(env, root / "second.log")
    assert second.wait(600) == 0, (root / "second.log").read_text()[-3000:]
    seconds = time.monotonic() - started
    dead = instance.get_run_by_id(dead.run_id)
    assert dead.status == DagsterRunStatus.FAILURE
    failure = instance.get_records_for_run(dead.run_id, of_type=_run_failure()).records[-1]
    assert "is gone" in failure.event_log_entry.dagster_event.message
    log = (root / "second.log").read_text()
    assert f"run {dead.run_id} (the process that ran it (pid" in log and "marked failed" in log
    figures = _training_figures(instance)
    assert figures["resumed_from_step"] >= 6, "the training resumed from the killed run's checkpoint"
    whole_training = figures["train_seconds"] * 36 / (36 - figures["resumed_from_step"])
    assert seconds < whole_training + 60 + 30, f"{seconds:.0f}s: at most one training plus a minute (and startup)"
    shutil.rmtree(root / "artifacts", ignore_errors=True)


def _run_failure():
    from dagster import DagsterEventType

    return DagsterEventType.RUN_FAILURE


def _training_figures(instance) -> dict:
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(["crash", "finetuned_model"]))
    return {key: getattr(value, "value", value) for key, value in event.asset_materialization.metadata.items()}


def test_sigterm_ends_a_training_run_within_seconds_and_its_checkpoints_resume(cli_project, monkeypatch):
    root, env = cli_project
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    first = start(env, root / "first.log")
    checkpoints = root / "artifacts" / "crash" / "checkpoints"
    wait_for(lambda: any(checkpoints.glob("*/checkpoint-*/trainer_state.json")), 300, "a complete checkpoint")
    training = [p for p in psutil.Process(first.pid).children(recursive=True) if CHILD in " ".join(p.cmdline())]
    assert training, "the training process runs"
    sent = time.monotonic()
    first.send_signal(signal.SIGTERM)  # the Dagster process alone, as a service manager stops it
    first.wait(30)
    assert time.monotonic() - sent < 10, "SIGTERM ends a training run within seconds"
    psutil.wait_procs(training, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in training), "training stopped"
    instance = instance_of(env)
    [stopped] = instance.get_runs()
    assert stopped.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
    second = start(env, root / "second.log")
    assert second.wait(600) == 0, (root / "second.log").read_text()[-3000:]
    assert _training_figures(instance)["resumed_from_step"] >= 6, "its checkpoints were resumed"
