"""The task-family interface: everything that differs between classification, summarization and
instruction tuning, and nothing else. The pipeline calls only these attributes and methods.

A family object is bound to one recipe (:func:`finetune_assets.tasks.get_task`): it holds the
recipe and what this run resolved from it (the precision on this machine, where the base model
is), so no method takes the recipe again. The interface comes in four parts, one per concern,
so that a new family reads, and implements, only what its stages ask of it:

- :class:`DataSide`: the rows (columns, pandera schema, cleaning conversions, split rules);
- :class:`TrainingSide`: the model and its inputs (loading, tokenization, collator, Trainer class);
- :class:`EvaluationSide`: scoring a model on the test split, with plots and tables;
- :class:`ExportSide`: the exported folder (what goes in it, how a user loads and asks it).

:class:`TaskFamily` is all four. A family's module must stay light to import (pandas and pandera
at most): loading the Definitions reads its class attributes and :meth:`DataSide.label_names`.
Torch, transformers and datasets are imported inside the methods that use them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from finetune_assets.data.cleaning import comparison_key

if TYPE_CHECKING:
    from datasets import DatasetDict

    from finetune_assets.models.precision import Precision
    from finetune_assets.recipes import Recipe


def weights_options(recipe: Recipe) -> dict:
    """What every ``from_pretrained`` of a model gets: safetensors only (a pickle file can run any
    code while it loads; a pickle-only folder or hub repository is refused), and remote code only
    where the recipe turns it on."""
    return {"use_safetensors": True, "trust_remote_code": recipe.trust_remote_code}


@dataclass
class Evaluation:
    """What one model scored on the test split, plus material for the report."""

    metrics: dict[str, float]
    details: dict = field(default_factory=dict)  # task-specific (per-class figures, matrices)
    samples: list[dict] = field(default_factory=list)  # a few inputs with prediction and truth


class BoundToRecipe:
    """A family object and the one recipe it serves, with what this run resolves from it once."""

    name: str  # what a recipe's ``task:`` says

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    @cached_property
    def precision(self) -> Precision:
        """``training.precision`` as this machine resolves it: training, evaluation and export agree."""
        from finetune_assets.models import precision

        return precision.resolve(self.recipe)

    @cached_property
    def base_location(self) -> str:
        """What ``from_pretrained`` receives for the recipe's base model (a folder or a hub id)."""
        from finetune_assets.data import sources

        return sources.model_location(self.recipe.base_model, self.recipe.source_file.parent, self.recipe.base_champion)


class DataSide(BoundToRecipe, ABC):
    """The rows: which columns, how raw rows become them, what valid rows look like, how they split."""

    text_columns: tuple[str, ...]  # canonical columns holding free text (cleaned, length-checked)
    # canonical columns holding earlier turns of a conversation as a JSON list of {role, content};
    # cleaning treats each turn's content like a text column
    conversation_columns: tuple[str, ...] = ()
    required_columns: tuple[str, ...]  # canonical columns a dataset must provide

    def unpack_records(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Rows in a record format the task understands (e.g. chat ``messages``) as plain columns,
        before the recipe's column mapping is checked; by default the rows as read."""
        return raw

    @abstractmethod
    def canonical_rows(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        """The rows in the task's columns with converted values (e.g. labels to ids), and the rows
        left out on purpose by reason (e.g. ``label excluded by recipe``), for the cleaning receipt."""

    def may_be_empty(self, rows: pd.DataFrame) -> pd.DataFrame | None:
        """Which text cells of ``rows`` may be empty on purpose (True), by text column: cleaning's
        ``empty text`` and ``min_chars`` rules pass them over (a KTO row holds one answer of two).
        None: every text must be there."""
        return None

    def cleaning_reads(self) -> tuple[str, ...]:
        """Recipe sections the family's cleaning reads besides ``task``, ``dataset`` and ``cleaning``
        (part of ``clean_dataset``'s fingerprint; ``base_model`` among them makes the cleaning load the
        starting model, pinned like any stage's that uses it). By default none."""
        return ()

    def complete_rows(self, rows: pd.DataFrame, log) -> pd.DataFrame:
        """Rows with what the data leaves for the family to write (preference pairs' rejected answers,
        generated by the starting model), after the text is cleaned and before the rules drop rows.
        By default the rows as they are."""
        return rows

    def row_rules(self) -> list[tuple[str, Callable[[pd.DataFrame], pd.Series]]]:
        """The family's own cleaning rules, each a reason and the rows it drops (e.g. a pair whose
        two answers are the same); they run after the text is cleaned, before the generic rules."""
        return []

    def label_names(self) -> list[str] | None:
        """The class labels in id order when rows carry a ``label`` column (classification), else
        None; label checks (class balance, labels in every split) run only where this is a list."""
        return None

    @abstractmethod
    def schema(self):
        """The pandera ``DataFrameModel`` that cleaned rows must satisfy."""

    def stratify_column(self) -> str | None:
        """Column whose proportions every split should keep, if any."""
        return None

    def split_groups(self, rows: pd.DataFrame) -> pd.Series | None:
        """A key per row; rows sharing a key land in the same split (e.g. answers to one prompt)."""
        return None

    def input_keys(self, rows: pd.DataFrame) -> pd.Series:
        """What identifies each row's input, normalised (case, punctuation and spacing ignored): a
        validation or test row whose key occurs in training has leaked. By default the first text
        column."""
        return rows[self.text_columns[0]].map(comparison_key)

    def describe_data(self, frame: pd.DataFrame) -> dict[str, float | int]:
        """Figures about cleaned rows worth showing in metadata (e.g. rows per label)."""
        return {}

    def text_length(self) -> dict[str, int]:
        """pandera ``str_length`` bounds for cleaned text columns: at least one character (cleaning
        drops empty text) and the recipe's ``cleaning`` bounds where it sets them."""
        cleaning = self.recipe.cleaning
        bounds = {"min_value": max(1, cleaning.min_chars), "max_value": cleaning.max_chars}
        return {k: v for k, v in bounds.items() if v is not None}

    def select_columns(self, raw: pd.DataFrame) -> pd.DataFrame:
        """The recipe's source columns for :attr:`required_columns`, renamed to the task's names."""
        frame = raw[[self.recipe.dataset.columns.get(c, c) for c in self.required_columns]].copy()
        frame.columns = list(self.required_columns)
        return frame


class TrainingSide(BoundToRecipe, ABC):
    """The model and what it is fed: how it loads with its head, its inputs, batches and Trainer."""

    @abstractmethod
    def peft_task_type(self, model) -> str:
        """The peft ``TaskType`` name to wrap ``model`` with when the method is LoRA."""

    @abstractmethod
    def load_model(self, location: str, **options):
        """A fresh pretrained model with the task head, ready to train or evaluate, loaded with
        :func:`weights_options`. ``options`` go to ``from_pretrained`` (QLoRA passes
        ``quantization_config``, ``dtype``, ``device_map``)."""

    @abstractmethod
    def tokenize(self, splits: DatasetDict, tokenizer) -> DatasetDict:
        """Add model inputs (and labels) to every split; keep the canonical columns."""

    @abstractmethod
    def collator(self, tokenizer, model):
        """The data collator that pads each batch dynamically."""

    def trainer_class(self):
        from transformers import Trainer

        return Trainer

    def training_arguments_class(self):
        """The arguments class that goes with :meth:`trainer_class`."""
        from transformers import TrainingArguments

        return TrainingArguments

    def extra_training_arguments(self) -> dict:
        """Task-specific training arguments (e.g. ``predict_with_generate``) on top of the common ones,
        which they override."""
        return {}

    def training_reads(self) -> tuple[str, ...]:
        """Recipe sections of the family's own that training reads (part of ``finetuned_model``'s
        fingerprint), e.g. ``preference``; other families' fingerprints stay free of them."""
        return ()

    # Whether a falling training loss says the model learned (the ``loss_decreased`` gate judges it);
    # not for GRPO, whose loss stays near 0 while the rewards rise.
    loss_shows_learning: bool = True

    def training_code(self) -> dict[str, str]:
        """The user's code training runs besides the project's (reward functions), by name, with a hash
        of its source: part of ``finetuned_model``'s fingerprint, so editing it retrains. By default none."""
        return {}

    # Whether the trainer class wraps the model in the LoRA adapter itself (TRL's trainers: then a
    # reference model is the base with the adapter off): it gets the base and the adapter's config.
    trainer_applies_adapter: bool = False

    def trainer_options(self, tokenizer, model, rows: tuple, adapter) -> dict:
        """What the trainer class gets besides the model, arguments, tokenizer and callbacks: by
        default the tokenized ``rows`` (train, validation) and the family's collator. ``adapter``: the
        LoRA config where :attr:`trainer_applies_adapter` and the method is LoRA, else None."""
        return {"train_dataset": rows[0], "eval_dataset": rows[1], "data_collator": self.collator(tokenizer, model)}


class EvaluationSide(BoundToRecipe, ABC):
    """Scoring: the figures a model earns on the test split, which one decides, and the report."""

    primary_metric: str  # the figure that says which model is better
    primary_metric_higher_is_better: bool = True  # False for losses and perplexity (promotion gates)
    # evaluate() also scores the shipped general-text probe (``general_text_perplexity``): the
    # ``forgetting`` check compares tuned and base model on it
    general_text_probe: bool = False

    @abstractmethod
    def evaluate(self, model, tokenizer, test, workdir: Path) -> Evaluation:
        """Score ``model`` on the tokenized ``test`` split."""

    @abstractmethod
    def report_plots(self, tuned: Evaluation, baseline: Evaluation, folder: Path) -> dict[str, Path]:
        """PNG plots for the evaluation report, by metadata key."""

    def report_metadata(self, tuned: Evaluation, baseline: Evaluation) -> dict:
        """Extra figures and tables for the evaluation report's metadata."""
        return {}

    def evaluation_reads(self) -> tuple[str, ...]:
        """Recipe sections of the family's own that scoring reads (part of ``evaluation_report``'s
        fingerprint and of the champion's scores' key), e.g. ``preference.beta``, which scales the
        implicit reward; other families' fingerprints stay free of them."""
        return ()


class ExportSide(BoundToRecipe, ABC):
    """The exported folder: what goes into it, and how a user loads and asks it."""

    pipeline_task: str  # the ``transformers.pipeline`` task that loads the export

    def prepare_export(self, model, tokenizer, folder: Path) -> None:
        """Adjust model and tokenizer just before they are saved into the export ``folder``, and add
        any files the export needs (e.g. generation settings, a pipeline class)."""

    def load_pipeline(self, folder: Path):
        """The exported ``folder`` loaded through ``transformers.pipeline`` (the export's smoke test)."""
        from transformers import pipeline

        return pipeline(self.pipeline_task, model=str(folder), device="cpu", model_kwargs=self.pipeline_model_options())

    def pipeline_model_options(self) -> dict:
        """How the export's pipeline loads its weights: safetensors only, in the dtype evaluation
        scored in, so the reload check repeats the report's answers computed alike."""
        return {"use_safetensors": True, "dtype": self.precision.inference_dtype()}

    @abstractmethod
    def reload_cases(self, test, tuned: dict, rows: int) -> list[tuple]:
        """Up to ``rows`` of the scored ``test`` rows as a user would ask the export's pipeline, each
        with the prediction the evaluation report recorded for it (``tuned``: the report's entry for
        the fine-tuned model), in words the pipeline answers in: what the ``export_reloads`` check asks."""

    def answer(self, pipeline, asked) -> str:
        """The loaded export's (:meth:`load_pipeline`) answer to one input of :meth:`reload_cases`."""
        return pipeline(asked)

    def usage_code(self, folder: str) -> str:
        """Python that loads the export from ``folder``, for the model card."""
        return f'from transformers import pipeline\nmodel = pipeline("{self.pipeline_task}", model="{folder}")'


class TaskFamily(DataSide, TrainingSide, EvaluationSide, ExportSide):
    """A whole task family: the four sides, bound to one recipe."""
