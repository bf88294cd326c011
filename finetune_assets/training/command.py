"""How a training process is started, and which process of a launch this one is.

The training itself is one module command, ``python -m finetune_assets.training.run``; the
recipe's ``compute.launcher`` only says what starts it: the interpreter alone (``local``),
``torch.distributed.run`` for data-parallel processes on this machine (``torchrun``), or
``accelerate launch`` with the recipe's config file (``accelerate``: FSDP, DeepSpeed and the rest
pass through untouched), or the Ray Train job's driver (``ray``: :mod:`finetune_assets.training.ray_job`
takes the same arguments and runs the module's training in each Ray Train worker). Every launcher
sets ``RANK`` and ``WORLD_SIZE`` in each process, which is how a process knows whether it is the
one that logs, saves and reports.

No torch here: the pipeline builds the command before any heavy import.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from finetune_assets.errors import RecipeError
from finetune_assets.recipes import Recipe

ENTRY_POINT = "finetune_assets.training.run"
RAY_DRIVER = "finetune_assets.training.ray_job"


def rank() -> int:
    """This process's rank in the launch: 0 alone logs, saves and reports."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accelerate_config(recipe: Recipe) -> Path:
    """The recipe's accelerate config file, relative to the recipe's folder; it must exist."""
    path = recipe.source_file.parent / recipe.compute.accelerate_config
    if not path.is_file():
        raise RecipeError(
            f"{recipe.source_file.name}: compute.accelerate_config: {path} not found; write it "
            f"with `accelerate config --config_file {path}` or fix the path"
        )
    return path


def training_command(
    recipe: Recipe,
    recipe_file: Path,
    splits: Path,
    out: Path,
    checkpoints: Path,
    fingerprint: str,
    precision: str | None = None,
) -> list[str]:
    """The command that trains ``recipe_file`` (a resolved recipe) on ``splits`` into ``out``,
    checkpointing into ``checkpoints`` under ``fingerprint``, started the way the recipe's
    ``compute`` says. Its first word is this interpreter (a container swaps in its own).
    ``precision`` is the one the fingerprint assumed: the process refuses to train in another."""
    python = sys.executable
    arguments = [
        "-m",
        ENTRY_POINT,
        "--recipe",
        str(recipe_file),
        "--splits",
        str(splits),
        "--out",
        str(out),
        "--checkpoints",
        str(checkpoints),
        "--fingerprint",
        fingerprint,
        *(["--precision", precision] if precision else []),
    ]
    spec = recipe.compute
    if spec.launcher == "torchrun":
        # --standalone: a rendezvous on a free local port, so two launches never collide
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={spec.processes}", *arguments]
    if spec.launcher == "accelerate":
        return [python, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config(recipe)), *arguments]
    if spec.launcher == "ray":
        return [python, "-m", RAY_DRIVER, *arguments[2:]]
    return [python, *arguments]


def check_splits(recipe: Recipe, splits: Path, processes: int) -> None:
    """The short validation pass before anything long starts: the splits are there, and the batch
    divides over the processes. Raises :class:`RecipeError` naming the setting to change."""
    if not (splits / "dataset_dict.json").is_file():
        raise RecipeError(
            f"{splits}: not a folder of tokenized splits (no dataset_dict.json); pass the "
            "tokenized_splits artifact's folder"
        )
    names = set(json.loads((splits / "dataset_dict.json").read_text())["splits"])
    if not {"train", "validation"} <= names:
        raise RecipeError(f"{splits}: has splits {sorted(names)}; training needs train and validation")
    batch = recipe.training.batch_size
    if batch % processes:
        raise RecipeError(
            f"{recipe.source_file.name}: training.batch_size {batch} does not divide over "
            f"{processes} processes; it is the batch of one optimizer step, split evenly over "
            f"the processes: use a multiple of {processes}"
        )
