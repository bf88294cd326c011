"""``compute.launcher: ray`` on a real Ray cluster of two nodes on this machine.

The module starts a head node and a worker node as two ``ray start --block`` processes (the head
with 2 CPUs, the worker with 1; no dashboard) and trains a tiny recipe from Dagster with 2 Ray Train
workers:

- placed by SPREAD, the two workers start on the two nodes: world size 2 and two node ids in the
  ``finetuned_model`` metadata, progress lines in the run log;
- the worker node killed (SIGKILL to its ``ray start`` and every process under it) after the first
  checkpoint was kept by Ray Train, the job restarts its workers on the node left, resumes at the
  checkpoint's step and completes; the metadata records the failure and the step resumed at.

Before the cluster starts, a driver pointed at no cluster names ``compute.ray.address``.

One training shows both, to keep the suite short: a Ray cluster and a job's start take a minute
on two cores.

Nothing is left running: each node's processes are killed by id at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance
from test_training_process import project, run, tiny_recipe

from finetune_assets.defs import build_definitions

if importlib.util.find_spec("ray") is None and os.environ.get("CI") != "true":  # CI installs it (scripts/setup.sh)
    pytest.skip("Ray is not installed: pip install -e '.[ray]'", allow_module_level=True)

RAY = str(Path(sys.executable).parent / "ray")
READY = "Ray runtime started"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(log: Path, *arguments: str) -> subprocess.Popen:
    """``ray start --block`` with ``arguments``, returned once its node runs."""
    with log.open("w") as out:
        node = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", "--object-store-memory", "80000000", *arguments],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while READY not in log.read_text():
        if node.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"ray start failed:\n{log.read_text()}")
        time.sleep(0.2)
    return node


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILL to the ``ray start`` process and every process it started: a machine lost at once."""
    try:
        processes = [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    node.wait()


@pytest.fixture(scope="module")
def cluster():
    """``(address, worker_node)``: a head and a worker node, stopped at the end."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    head = start_node(
        temp / "head.log",
        "--head",
        f"--port={port}",
        f"--ray-client-server-port={free_port()}",
        "--num-cpus=2",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
    )
    nodes = [head]
    try:
        nodes.append(start_node(temp / "worker.log", f"--address=127.0.0.1:{port}", "--num-cpus=1"))
        yield f"127.0.0.1:{port}", nodes[1]
    finally:
        for node in reversed(nodes):
            kill_node(node)
        shutil.rmtree(temp, ignore_errors=True)


def checkpoints_kept(storage: Path) -> list[int]:
    """Steps of the checkpoints Ray Train has registered: its checkpoint manager's snapshot in the
    storage lists them once every rank reported (files alone in the storage may be half a checkpoint)."""
    snapshots = storage.glob("*/checkpoint_manager_snapshot.json")
    try:
        return sorted(
            kept["metrics"]["step"] for path in snapshots for kept in json.loads(path.read_text())["checkpoint_results"]
        )
    except (OSError, ValueError):  # being written
        return []


def test_no_cluster_at_the_address_is_an_error_naming_it(make_recipe, tmp_path, monkeypatch):
    """Without a cluster at ``compute.ray.address`` the driver stops at once, names the setting, and
    records the failure for the launching step (``failures.jsonl`` in the checkpoint folder). It runs
    before the module's cluster starts: ``auto`` would find that one."""
    from finetune_assets.errors import RecipeError
    from finetune_assets.training import ray_job

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    recipe = make_recipe(compute={"launcher": "ray"})
    arguments = ["--recipe", str(recipe.source_file), "--splits", str(tmp_path), "--out", str(tmp_path / "out")]
    with pytest.raises(RecipeError, match=r"compute.ray.address: no Ray cluster at auto"):
        ray_job.main([*arguments, "--checkpoints", str(tmp_path / "checkpoints"), "--fingerprint", "f00d"])
    record = json.loads((tmp_path / "checkpoints" / "failures.jsonl").read_text())
    assert record["type"] == "RecipeError" and record["step"] == 0


def test_two_workers_on_two_nodes_survive_the_loss_of_one(cluster, tiny_bert, tmp_path):
    """One training shows both: its first start spreads the 2 workers over the 2 nodes; the worker
    node lost after the first checkpoint, the job resumes at that checkpoint's step on the head."""
    address, worker_node = cluster
    storage = tmp_path / "ray-storage"
    ray = {"address": address, "workers": 2, "max_failures": 1, "storage": str(storage)}
    recipe = tiny_recipe(tiny_bert, launcher="ray", ray=ray)
    # 48 rows, batch 4 over 2 workers: 12 steps an epoch; a checkpoint every 5 steps, never at an
    # epoch's start; longer texts: slower steps, time to lose the node between checkpoints
    recipe["training"].update(save_steps=5, epochs=2, max_length=64)
    artifacts = tmp_path / "artifacts"
    defs = build_definitions([project(tmp_path, "spread", recipe)], str(artifacts))
    killed_after: list[list[int]] = []

    def lose_the_worker_node():
        deadline = time.monotonic() + 300
        while not checkpoints_kept(storage) and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_after.append(checkpoints_kept(storage))
        kill_node(worker_node)

    killer = threading.Thread(target=lose_the_worker_node)
    killer.start()
    done = run(defs, DagsterInstance.ephemeral(), "spread")
    killer.join()

    assert done.result.success, done.logs
    trained = done.metadata["finetuned_model"]
    assert trained["launcher"] == "ray" and trained["world_size"] == 2
    first, then = (start.split(", ") for start in trained["ray_node_ids"].split(" | "))
    assert len(first) == len(set(first)) == 2, first  # one rank on each node
    assert len(then) == 2 and set(then) < set(first), then  # both on the node left
    assert any(line.startswith("Ray Train: 2 workers started on nodes") for line in done.logs)
    assert any(line.startswith("step 24/24") for line in done.logs)  # rank 0's progress, through Pipes

    assert killed_after and killed_after[0], "no checkpoint reached the storage before the node was lost"
    assert trained["ray_restarts"] == 1 and trained["ray_failures"], trained
    resumed = trained["resumed_from_step"]
    assert resumed >= killed_after[0][-1] and resumed % 5 == 0 and resumed % 12, resumed  # not an epoch's start
    assert trained["ray_resumed_at_steps"] == f"0, {resumed}"
    assert any(f"resumed at step {resumed}" in line for line in done.logs)
    assert trained["optimizer_steps"] == 24
    assert not list(storage.iterdir()), "a trained model leaves no checkpoints behind"
