"""Experiment tracking: the trackers a recipe reports training to (``training.report_to``).

The Trainer's own integrations do the reporting (``report_to`` passes straight through); this
module checks, before any work, that each chosen tracker is installed (a missing one fails
``raw_dataset`` and the training process before they read data or load a model, naming the
package and the setting), and puts TensorBoard's event files into the trained model's folder,
``tensorboard/``, so they stay with the run's artifacts. MLflow and Weights & Biases read where
to report from their own environment variables (``MLFLOW_TRACKING_URI``, ``WANDB_PROJECT``, ...).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

from finetune_assets.errors import RecipeError
from finetune_assets.recipes import Recipe

# What each tracker needs installed, as transformers checks it (TensorBoard: either package).
PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "wandb": ("wandb",)}
EVENT_FILES = "tensorboard"  # the folder inside the trained model's folder
_TENSORBOARD_FOLDER = "TENSORBOARD_LOGGING_DIR"  # where transformers' TensorBoardCallback writes


def require_trackers(recipe: Recipe) -> None:
    """Fail now, naming the package, when a tracker of ``training.report_to`` is not installed."""
    for tracker in recipe.training.report_to:
        if not any(importlib.util.find_spec(package) for package in PACKAGES[tracker]):
            raise RecipeError(
                f"{recipe.source_file.name}: training.report_to: {tracker} needs the '{PACKAGES[tracker][0]}' "
                f"package, which is not installed here; pip install {PACKAGES[tracker][0]}, or take {tracker} "
                "out of training.report_to"
            )


@contextlib.contextmanager
def event_files_into(folder: Path, recipe: Recipe):
    """While the Trainer is created, point its TensorBoard callback (which reads the folder from
    ``TENSORBOARD_LOGGING_DIR`` when it is made) at ``folder/tensorboard``."""
    if "tensorboard" not in recipe.training.report_to:
        yield
        return
    before = os.environ.get(_TENSORBOARD_FOLDER)
    os.environ[_TENSORBOARD_FOLDER] = str(folder / EVENT_FILES)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_TENSORBOARD_FOLDER, None)
        else:
            os.environ[_TENSORBOARD_FOLDER] = before
