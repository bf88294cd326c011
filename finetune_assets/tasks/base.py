"""The task-family interface: everything that differs between classification, summarization and
instruction tuning, and nothing else. The asset chain calls only these methods."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from datasets import DatasetDict

from finetune_assets.recipe import Recipe


@dataclass
class Evaluation:
    """What one model scored on the test split, plus material for the report."""

    metrics: dict[str, float]
    details: dict = field(default_factory=dict)  # task-specific (per-class figures, matrices)
    samples: list[dict] = field(default_factory=list)  # a few inputs with prediction and truth


class TaskFamily(ABC):
    """One task family. Subclasses are stateless; every method receives the recipe."""

    name: str
    text_columns: tuple[str, ...]  # canonical columns holding free text (cleaned, length-checked)
    required_columns: tuple[str, ...]  # canonical columns a dataset must provide
    pipeline_task: str  # the ``transformers.pipeline`` task that loads the export
    primary_metric: str  # the figure a better model must raise

    @abstractmethod
    def canonical_rows(self, raw: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
        """Rename source columns to the task's and convert values (e.g. labels to ids)."""

    @abstractmethod
    def schema(self, recipe: Recipe):
        """The pandera ``DataFrameModel`` that cleaned rows must satisfy."""

    def stratify_column(self) -> str | None:
        """Column whose proportions every split should keep, if any."""
        return None

    @abstractmethod
    def load_model(self, location: str, recipe: Recipe):
        """A fresh pretrained model with the task head, ready to train or evaluate."""

    @abstractmethod
    def tokenize(self, splits: DatasetDict, tokenizer, recipe: Recipe) -> DatasetDict:
        """Add model inputs (and labels) to every split; keep the canonical columns."""

    @abstractmethod
    def collator(self, tokenizer, model):
        """The data collator that pads each batch dynamically."""

    def trainer_class(self):
        from transformers import Trainer

        return Trainer

    def peft_task_type(self) -> str:
        """The peft ``TaskType`` name used when the method is LoRA."""
        raise NotImplementedError

    @abstractmethod
    def evaluate(self, model, tokenizer, test, recipe: Recipe, workdir: Path) -> Evaluation:
        """Score ``model`` on the tokenized ``test`` split."""

    @abstractmethod
    def report_plots(self, tuned: Evaluation, baseline: Evaluation, recipe: Recipe,
                     folder: Path) -> dict[str, Path]:
        """PNG plots for the evaluation report, by metadata key."""

    def report_metadata(self, tuned: Evaluation, baseline: Evaluation, recipe: Recipe) -> dict:
        """Extra figures and tables for the evaluation report's metadata."""
        return {}

    def describe_data(self, frame: pd.DataFrame, recipe: Recipe) -> dict[str, float | int]:
        """Figures about cleaned rows worth showing in metadata (e.g. rows per label)."""
        return {}
