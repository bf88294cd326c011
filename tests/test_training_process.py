"""Training as its own process, on a tiny real BERT and a few dozen real tweets.

- killed with SIGKILL right after its first checkpoint, the training child is retried by Dagster's
  RetryPolicy and resumes from that checkpoint, ending where an uninterrupted run ends;
- a checkpoint of another fingerprint (an edited recipe) is never resumed;
- ``launcher: torchrun, processes: 2`` trains with two DDP ranks (gloo on CPU): rank 0 alone logs
  and saves, each rank keeps its own RNG state, the batch is split over the ranks;
- the training pool set in ``dagster_home/dagster.yaml`` holds a second training back.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import yaml
from conftest import NO_QUALITY_GATES
from dagster import AssetKey, AssetSelection, DagsterEventType, DagsterInstance, materialize
from safetensors.torch import load_file
from test_pipeline import tweets_csv

from finetune_assets.defs import build_definitions
from finetune_assets.defs.pipes_messages import whole_lines
from finetune_assets.defs.training import LocalTraining
from finetune_assets.models import precision
from finetune_assets.pipeline import caching
from finetune_assets.pipeline.chain import CHAIN
from finetune_assets.pipeline.runner import run_stage
from finetune_assets.recipes import load_recipe
from finetune_assets.training import checkpoints

REPO = Path(__file__).resolve().parents[1]
UP_TO_TRAINING = ("raw_dataset", "clean_dataset", "tokenized_splits", "finetuned_model")
CHILD = "finetune_assets.training.run"


def tiny_recipe(base_model: Path, **compute) -> dict:
    """48 training rows, batch 4: 12 optimizer steps an epoch, a checkpoint every 6."""
    return {
        "task": "classification",
        "base_model": str(base_model),
        "dataset": {
            "source": "tweets.csv",
            "encoding": "latin-1",
            "columns": {"text": "text", "label": "sentiment"},
            "labels": ["negative", "positive"],
            "drop_labels": ["neutral"],
        },
        "splits": {"validation": 0.2, "test": 0.2, "seed": 3},
        "training": {
            "epochs": 3,
            "learning_rate": 1e-3,
            "batch_size": 4,
            "max_length": 32,
            "logging_steps": 1,
            "save_steps": 6,
            "seed": 3,
        },
        "compute": {"retries": 1, "retry_delay_seconds": 0, **compute},
        "checks": NO_QUALITY_GATES,
    }


def project(root: Path, name: str, recipe: dict) -> Path:
    recipes = root / "recipes"
    recipes.mkdir(parents=True, exist_ok=True)
    if not (recipes / "tweets.csv").exists():
        tweets_csv(recipes / "tweets.csv", per_label=40)
    (recipes / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    return recipes


def run(defs, instance, recipe: str, assets=UP_TO_TRAINING):
    selection = AssetSelection.assets(*[AssetKey([recipe, asset]) for asset in assets])
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        selection=selection,
        resources=defs.resources,
        instance=instance,
        raise_on_error=False,
    )
    metadata = {
        e.asset_key.path[-1]: {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    return SimpleNamespace(result=result, metadata=metadata, logs=logs)


def training_children() -> list[psutil.Process]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if CHILD in process.cmdline():
                found.append(process)
        except psutil.Error:
            continue
    return found


KILLED: list[int] = []


class KillFirstAttempt(LocalTraining):
    """The local training host, except that the first attempt's training process gets SIGKILL as soon
    as its first checkpoint is complete (what an OOM kill or a preempted machine does)."""

    def starter(self, context, recipe, artifacts_root):
        start = super().starter(context, recipe, artifacts_root)
        if context.retry_number > 0:
            return start

        def kill_after_first_checkpoint(folder: Path):
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and not (folder.is_dir() and checkpoints.newest_complete(folder)):
                time.sleep(0.005)
            for process in training_children():
                process.send_signal(signal.SIGKILL)
                KILLED.append(process.pid)

        def start_and_kill(command, env, report):
            folder = Path(command[command.index("--checkpoints") + 1])
            killer = threading.Thread(target=kill_after_first_checkpoint, args=(folder,), daemon=True)
            killer.start()
            return start(command, env, report)

        return start_and_kill


def steps_logged(lines: list[str]) -> list[int]:
    """Optimizer steps of the progress lines that carry a training loss."""
    return [int(m.group(1)) for line in lines if (m := re.match(r"step (\d+)/\d+ .*: loss=", line))]


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, tiny_bert):
    """One Dagster run whose training child is killed once, then an uninterrupted reference run of
    the same training through the plain command (``python -m finetune_assets.training.run``)."""
    root = tmp_path_factory.mktemp("resume")
    recipes = project(root, "crash", tiny_recipe(tiny_bert))
    defs = build_definitions([recipes], str(root / "artifacts"), training=KillFirstAttempt())
    dagster_run = run(defs, DagsterInstance.ephemeral(), "crash")
    splits = dagster_run.metadata["tokenized_splits"]["path"]
    reference = subprocess.run(
        [
            sys.executable,
            "-m",
            CHILD,
            "--recipe",
            str(recipes / "crash.yaml"),
            "--splits",
            splits,
            "--out",
            str(root / "reference"),
            "--checkpoints",
            str(root / "reference-checkpoints"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    return SimpleNamespace(root=root, recipes=recipes, splits=splits, **vars(dagster_run))


def test_a_killed_training_is_retried_and_resumes_from_its_last_checkpoint(crashed):
    assert KILLED, "the first training process was killed"
    assert crashed.result.success
    retried = [e for e in crashed.result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert [e.step_key for e in retried] == ["crash__finetuned_model"]
    figures = crashed.metadata["finetuned_model"]
    interval, resumed = figures["checkpoint_every_steps"], figures["resumed_from_step"]
    assert interval == 6 and resumed >= interval and resumed % interval == 0
    # The killed attempt's last logged step, against the step the retry resumed from.
    resumed_line = next(i for i, line in enumerate(crashed.logs) if f"resumed at step {resumed}" in line)
    killed_at = max(steps_logged(crashed.logs[:resumed_line]))
    assert 0 <= killed_at - resumed <= interval, "at most one save interval of steps is lost"
    assert steps_logged(crashed.logs[resumed_line:])[0] == resumed + 1
    assert figures["optimizer_steps"] == 36
    fingerprint = crashed.metadata["finetuned_model"]["fingerprint"]
    assert not (crashed.root / "artifacts" / "crash" / "checkpoints" / fingerprint).exists(), (
        "checkpoints are deleted once the stage completes"
    )


def test_the_resumed_model_matches_an_uninterrupted_run(crashed):
    resumed_dir = Path(crashed.metadata["finetuned_model"]["path"])
    reference_dir = crashed.root / "reference"
    resumed = json.loads((resumed_dir / "training_figures.json").read_text())
    reference = json.loads((reference_dir / "training_figures.json").read_text())
    assert "resumed_from_step" not in reference or reference["resumed_from_step"] is None
    assert resumed["final_validation_loss"] == pytest.approx(reference["final_validation_loss"], abs=1e-3)
    ours, theirs = load_file(resumed_dir / "model.safetensors"), load_file(reference_dir / "model.safetensors")
    assert ours.keys() == theirs.keys()
    # Weights, optimizer, scheduler, RNG and data position were restored: the same model (on this
    # machine, bit for bit). train_loss is not compared: the Trainer averages only the losses of
    # the resumed session over all steps.
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) < 1e-5


def test_the_training_process_trains_in_the_precision_the_pipeline_resolved(crashed):
    """The Pipes-launched child's Trainer gets the precision the pipeline resolved here and named the
    model by (its progress line reads the Trainer's own arguments)."""
    numerics = precision.resolve(load_recipe(crashed.recipes / "crash.yaml"))
    figures = crashed.metadata["finetuned_model"]
    assert (figures["precision"], figures["precision_reason"]) == (numerics.name, numerics.reason)
    started = [line for line in crashed.logs if line.startswith("training: 36 optimizer steps")]
    assert started and all(
        ("bf16 mixed precision" if numerics.name == "bf16" else "float32") in line for line in started
    )


@pytest.mark.skipif(
    precision.cuda_device() is not None, reason="FINETUNE_CPU_BF16 speaks for a CPU; a GPU decides first"
)
def test_the_command_refuses_a_precision_this_machine_does_not_resolve_to(crashed, tmp_path):
    """Launched elsewhere (a pod on other hardware), the process would train in another precision
    than the fingerprint names: it refuses, naming the setting, before loading any model."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            CHILD,
            "--recipe",
            str(crashed.recipes / "crash.yaml"),
            "--splits",
            crashed.splits,
            "--out",
            str(tmp_path / "out"),
            "--precision",
            "bf16",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, precision.CPU_OVERRIDE: "0"},
    )
    assert done.returncode == 2
    assert "crash.yaml: training.precision: auto resolves to fp32 on this machine" in done.stderr
    assert "but to bf16 where the pipeline runs" in done.stderr
    assert not (tmp_path / "out").exists(), "nothing was written"


def test_the_command_and_the_pipeline_name_a_training_alike(crashed):
    marker = json.loads((crashed.root / "reference-checkpoints" / checkpoints.MARKER).read_text())
    assert marker == {"fingerprint": crashed.metadata["finetuned_model"]["fingerprint"], "processes": 1}


def edited(crashed, tiny_bert) -> Path:
    """The same recipe with another learning rate and early stopping: another training, another
    fingerprint."""
    recipe = tiny_recipe(tiny_bert)
    recipe["training"].update(learning_rate=5e-4, early_stopping_patience=2)
    folder = crashed.root / "edited"
    folder.mkdir(exist_ok=True)
    shutil.copy(crashed.recipes / "tweets.csv", folder / "tweets.csv")
    (folder / "crash.yaml").write_text(yaml.safe_dump(recipe))
    return folder / "crash.yaml"


def listing(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def test_the_command_refuses_checkpoints_of_another_training(crashed, tiny_bert):
    folder = crashed.root / "reference-checkpoints"
    before = listing(folder)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            CHILD,
            "--recipe",
            str(edited(crashed, tiny_bert)),
            "--splits",
            crashed.splits,
            "--out",
            str(crashed.root / "edited-out"),
            "--checkpoints",
            str(folder),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    owner = json.loads((folder / checkpoints.MARKER).read_text())["fingerprint"]
    assert "holds checkpoints of another training" in done.stderr and owner in done.stderr
    assert listing(folder) == before, "another training's checkpoints are left as they were"


def test_an_edited_recipe_starts_fresh_beside_the_old_checkpoints(crashed, tiny_bert, caplog):
    # The original training's checkpoints, as a crash would have left them in the artifacts root.
    original = crashed.metadata["finetuned_model"]["fingerprint"]
    left = crashed.root / "artifacts" / "crash" / "checkpoints" / original
    shutil.copytree(crashed.root / "reference-checkpoints", left)
    before = listing(left)
    splits = caching.load(Path(crashed.splits))[0]
    ref, figures, _ = run_stage(
        CHAIN["finetuned_model"],
        load_recipe(edited(crashed, tiny_bert)),
        crashed.root / "artifacts",
        __import__("logging").getLogger("edited"),
        [splits],
    )
    assert ref.fingerprint != original
    assert figures.get("resumed_from_step") is None
    assert listing(left) == before
    assert not (left.parent / ref.fingerprint).exists()
    # With early stopping, validation runs at every checkpoint (the best one is kept).
    history = json.loads((Path(ref.path) / "log_history.json").read_text())
    evaluated = [row["step"] for row in history if "eval_loss" in row]
    assert evaluated == list(range(6, figures["optimizer_steps"] + 1, 6))


# --- several processes ---------------------------------------------------------------------------

CHECKPOINT_FILES: dict[str, list[str]] = {}


class RecordCheckpoints(LocalTraining):
    """The local launcher, recording which files the checkpoints held when training ended (the
    runner deletes them right after)."""

    def starter(self, context, recipe, artifacts_root):
        launch = super().starter(context, recipe, artifacts_root)

        def launch_and_record(command, env, report):
            figures = launch(command, env, report)
            folder = Path(command[command.index("--checkpoints") + 1])
            CHECKPOINT_FILES.update(
                {path.name: sorted(f.name for f in path.iterdir()) for path in folder.glob("checkpoint-*")}
            )
            return figures

        return launch_and_record


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("torchrun")
    recipes = project(root, "ddp", tiny_recipe(tiny_bert, launcher="torchrun", processes=2))
    defs = build_definitions([recipes], str(root / "artifacts"), training=RecordCheckpoints())
    return SimpleNamespace(
        root=root,
        defs=defs,
        **vars(run(defs, DagsterInstance.ephemeral(), "ddp", UP_TO_TRAINING + ("evaluation_report", "exported_model"))),
    )


def test_torchrun_trains_on_two_ranks_and_rank_zero_alone_logs_and_saves(two_ranks):
    assert two_ranks.result.success
    figures = two_ranks.metadata["finetuned_model"]
    assert figures["world_size"] == 2 and figures["launcher"] == "torchrun"
    # The recipe's batch of 4 is one optimizer step's, split 2 + 2: as many steps as on one process.
    rows = two_ranks.metadata["tokenized_splits"]["rows_train"]
    assert figures["optimizer_steps"] == math.ceil(rows / 4) * 3
    # Progress reached the run log through Pipes, once per step: the second rank does not log.
    steps = steps_logged(two_ranks.logs)
    assert steps == list(range(1, figures["optimizer_steps"] + 1))
    # Each checkpoint holds one copy of the weights and trainer state (rank 0 saves them) and each
    # rank's own RNG state, which resuming two ranks needs.
    assert len(CHECKPOINT_FILES) == 2, "save_total_limit: 2 of the 6 checkpoints are kept"
    for files in CHECKPOINT_FILES.values():
        assert files.count("model.safetensors") == 1 and "trainer_state.json" in files
        assert [f for f in files if f.startswith("rng_state")] == ["rng_state_0.pth", "rng_state_1.pth"]
    assert two_ranks.metadata["evaluation_report"]["accuracy"] >= 0  # the chain goes on from the model


def test_bad_settings_fail_the_training_at_once_without_retries(two_ranks):
    from finetune_assets.defs.resources import RunSettings

    defs = two_ranks.defs
    selection = AssetSelection.assets(AssetKey(["ddp", "finetuned_model"]))
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        selection=selection,
        raise_on_error=False,
        resources={**defs.resources, "run_settings": RunSettings(force=True, processes=3)},
        instance=DagsterInstance.ephemeral(),
    )
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "batch_size 4 does not divide over 3 processes" in failure.description


def test_the_training_pool_lets_one_training_run_at_a_time(two_ranks, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = DagsterInstance.get()
    pools = {
        key.path[1]: two_ranks.defs.resolve_assets_def(key).op.pool
        for key in two_ranks.defs.resolve_asset_graph().get_all_asset_keys()
    }
    assert pools.pop("finetuned_model") == "training" and set(pools.values()) == {None}
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("training")
    assert storage.get_concurrency_info("training").slot_count == 1  # the limit dagster.yaml sets
    storage.claim_concurrency_slot("training", "another-run", "another-training")
    done = {}
    thread = threading.Thread(
        target=lambda: done.update(run=run(two_ranks.defs, instance, "ddp", ("finetuned_model",)))
    )
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not blocked(instance):
        time.sleep(0.5)
    time.sleep(2)
    assert blocked(instance) and thread.is_alive(), "the training waits while another run holds the only slot"
    storage.free_concurrency_slot_for_step("another-run", "another-training")
    thread.join(timeout=120)
    assert done["run"].result.success and done["run"].metadata["finetuned_model"]["cache_hit"] is True


def blocked(instance) -> bool:
    """Whether a run's log says a step waits for the training pool."""
    return any(
        "blocked by limit for pool training" in entry.user_message
        for run in instance.get_runs()
        for entry in instance.all_logs(run.run_id)
    )


def test_a_training_that_raises_says_why_and_is_not_retried_before_its_first_step(tmp_path, tiny_bert):
    broken = Path(shutil.copytree(tiny_bert, tmp_path / "broken_bert"))
    (broken / "model.safetensors").write_bytes(b"{not the weights}")  # the tokenizer and config still load
    recipes = project(tmp_path, "broken", tiny_recipe(broken))
    done = run(build_definitions([recipes], str(tmp_path / "artifacts")), DagsterInstance.ephemeral(), "broken")
    assert not done.result.success
    assert not [e for e in done.result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    [step_failure] = done.result.get_step_failure_events()
    said = step_failure.step_failure_data.user_failure_data.description
    assert said.startswith("training failed: ") and "at optimizer step 0" in said, said
    assert "Error while deserializing header" in said, "the exception's own message reaches the step"
    assert "trainer.py:" in said and "<- run.py:" in said, "with the last frames of the project's code"
    assert "Not retried: it failed before the first optimizer step" in said
    assert any(line.startswith("training failed: ") for line in done.logs), "the process said it in the run log"


def test_a_retry_is_refused_for_the_same_exception_at_the_same_step(tmp_path):
    from finetune_assets.errors import ProcessFailed
    from finetune_assets.training import failure

    def attempt(message: str, step: int) -> failure.TrainingFailed:
        started = time.time()
        error = RuntimeError(message)
        error.training_step = step
        failure.record(tmp_path, error)
        return failure.explain(ProcessFailed("exited with code 1"), tmp_path, started)

    assert attempt("NaN in the loss", 7).retryable  # the first time at step 7: a retry may help
    again = attempt("NaN in the loss", 7)
    assert not again.retryable and "the same exception at the same step" in str(again)
    assert attempt("NaN in the loss", 9).retryable  # it moved on: another retry may help
    killed = failure.explain(ProcessFailed("exited with code -9"), tmp_path, time.time() + 1)
    assert killed.retryable and "probably killed" in str(killed)


def test_pipes_messages_are_read_as_whole_lines_while_a_long_one_is_still_being_written(tmp_path):
    """Dagster's own reader hands over a message caught half-written; ours waits for its newline."""
    path = tmp_path / "messages"
    path.touch()
    long = json.dumps({"method": "report_asset_materialization", "plot": "x" * 50_000})
    done = threading.Event()

    def write():
        with path.open("a", encoding="utf-8") as stream:
            stream.write('{"method": "opened"}\n')
            stream.flush()
            for start in range(0, len(long), 10_000):  # the long line in five pieces, a pause between
                stream.write(long[start : start + 10_000])
                stream.flush()
                time.sleep(0.05)
            stream.write("\n" + '{"method": "closed"}')  # the last without its newline
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    lines = list(whole_lines(path, done.is_set))
    writer.join()
    assert [json.loads(line)["method"] for line in lines] == ["opened", "report_asset_materialization", "closed"]
    assert json.loads(lines[1])["plot"] == "x" * 50_000
