"""Sequence classification: columns ``text`` and ``label`` (an id into the recipe's label names)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from finetune_assets.errors import DataError
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import Markdown
from finetune_assets.tasks.base import Evaluation, TaskFamily, weights_options

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe


class Classification(TaskFamily):
    """Assigns one of the recipe's labels to a text; baseline is the base model with an untrained head."""

    name = "classification"
    text_columns = ("text",)
    required_columns = ("text", "label")
    pipeline_task = "text-classification"
    primary_metric = "f1_macro"

    def peft_task_type(self, model) -> str:
        return "SEQ_CLS"

    def canonical_rows(self, raw: pd.DataFrame, recipe: Recipe) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        names = _label_names(recipe)
        lookup = _label_lookup(recipe, names)
        frame = self.select_columns(raw, recipe)
        raw_labels = frame["label"].map(_normalise_label)
        excluded = raw_labels.isin({_normalise_label(v) for v in recipe.dataset.drop_labels})
        unknown = ~excluded & ~raw_labels.isin(lookup)
        if unknown.any():
            sample = frame["label"][unknown]
            shown = ", ".join(f"row {i}: {v!r}" for i, v in sample.head(5).items())
            raise DataError(
                f"{unknown.sum()} row(s) have a label outside the recipe's mapping ({shown}). Known: "
                f"{sorted(lookup)}. Add it to dataset.label_aliases or dataset.drop_labels.")
        dropped = {"label excluded by recipe": frame[excluded]}
        kept = frame[~excluded].copy()
        kept["label"] = raw_labels[~excluded].map(lookup).astype("int64")
        return kept, dropped

    def schema(self, recipe: Recipe):
        label_ids = list(range(len(_label_names(recipe))))
        length = self.text_length(recipe)

        class ClassificationRows(pa.DataFrameModel):
            """Cleaned classification rows: text within the recipe's length bounds, a known label id."""

            text: Series[str] = pa.Field(str_length=length)
            label: Series[int] = pa.Field(isin=label_ids)

        return ClassificationRows

    def label_names(self, recipe: Recipe) -> list[str] | None:
        return recipe.dataset.labels

    def stratify_column(self) -> str | None:
        return "label"

    def load_model(self, location: str, recipe: Recipe, **options):
        from transformers import AutoModelForSequenceClassification

        names = _label_names(recipe)
        return AutoModelForSequenceClassification.from_pretrained(
            location, num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}, **weights_options(recipe), **options)

    def tokenize(self, splits, tokenizer, recipe: Recipe):
        from finetune_assets.training.tokenizer import tokenize_and_cut, tokenizing_processes

        max_length = recipe.training.max_length

        def encode(batch):
            encoded = tokenize_and_cut(tokenizer, batch["text"], max_length)
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            return encoded

        return splits.map(encode, batched=True, num_proc=tokenizing_processes(splits), desc="tokenizing")

    def collator(self, tokenizer, model):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def evaluate(self, model, tokenizer, test, recipe: Recipe, workdir: Path) -> Evaluation:
        from transformers import Trainer, TrainingArguments

        from finetune_assets.metrics import load_metric
        from finetune_assets.training import batching

        names = _label_names(recipe)
        args = batching.inference_arguments(TrainingArguments, workdir, recipe.training.eval_batch_size)
        trainer = Trainer(model=model, args=args, data_collator=self.collator(tokenizer, model))
        inputs = [c for c in ("input_ids", "attention_mask", "token_type_ids", "label") if c in test.column_names]
        predicted = batching.predict_longest_first(trainer, test, inputs).argmax(-1)
        truth = np.asarray(test["label"])
        scores = load_metric("classification").compute(
            predictions=predicted.tolist(), references=truth.tolist(), num_labels=len(names))
        metrics = {k: scores[k] for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro")}
        details = {k: scores[k] for k in ("precision", "recall", "f1", "support", "confusion_matrix")}
        details["majority_class_rate"] = float(np.bincount(truth).max() / len(truth))
        details["predictions"] = predicted.tolist()
        return Evaluation(metrics=metrics, details=details,
                          samples=_samples(test["text"], truth, predicted, names))

    def report_plots(self, tuned: Evaluation, baseline: Evaluation, recipe: Recipe,
                     folder: Path) -> dict[str, Path]:
        from finetune_assets.report import plots

        names = _label_names(recipe)
        return {
            "confusion_matrix": plots.confusion_matrix(
                tuned.details["confusion_matrix"], names, "Fine-tuned model", folder / "confusion_matrix.png"),
            "baseline_confusion_matrix": plots.confusion_matrix(
                baseline.details["confusion_matrix"], names, "Base model (untrained head)",
                folder / "baseline_confusion_matrix.png"),
        }

    def report_metadata(self, tuned: Evaluation, baseline: Evaluation, recipe: Recipe) -> dict:
        names = _label_names(recipe)
        details = tuned.details
        per_class = [{"label": names[i], "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                      "support": n} for i, (p, r, f, n) in enumerate(
                          zip(details["precision"], details["recall"], details["f1"], details["support"]))]
        matrix = [{"true \\ predicted": names[i], **{names[j]: n for j, n in enumerate(row)}}
                  for i, row in enumerate(details["confusion_matrix"])]
        majority = details["majority_class_rate"]
        return {
            "majority_class_rate": majority,
            "accuracy_points_over_majority": round(100 * (tuned.metrics["accuracy"] - majority), 2),
            "per_class": Markdown(markdown_table(per_class)),
            "confusion_matrix_table": Markdown(markdown_table(matrix)),
        }

    def describe_data(self, frame: pd.DataFrame, recipe: Recipe) -> dict[str, float | int]:
        names = _label_names(recipe)
        counts = frame["label"].value_counts()
        return {f"rows_label_{names[i]}": int(counts.get(i, 0)) for i in range(len(names))}


def _label_names(recipe: Recipe) -> list[str]:
    if not recipe.dataset.labels:
        raise DataError(f"{recipe.source_file}: dataset.labels: classification needs the label names")
    return recipe.dataset.labels


def _normalise_label(value) -> str:
    """Labels compare as trimmed lower-case text, so 1, "1" and " Pos " find their mapping."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _label_lookup(recipe: Recipe, names: list[str]) -> dict[str, int]:
    lookup = {_normalise_label(name): i for i, name in enumerate(names)}
    lookup.update({str(i): i for i in range(len(names))})
    for alias, target in recipe.dataset.label_aliases.items():
        if _normalise_label(target) not in lookup:
            raise DataError(f"{recipe.source_file}: dataset.label_aliases.{alias}: '{target}' is not "
                            f"one of dataset.labels {names}")
        lookup[_normalise_label(alias)] = lookup[_normalise_label(target)]
    return lookup


def _samples(texts, truth, predicted, names, per_kind: int = 4) -> list[dict]:
    """A few right and a few wrong predictions, in test order."""
    right = [i for i in range(len(truth)) if truth[i] == predicted[i]][:per_kind]
    wrong = [i for i in range(len(truth)) if truth[i] != predicted[i]][:per_kind]
    return [{"text": texts[i][:300], "label": names[truth[i]], "predicted": names[predicted[i]],
             "correct": bool(truth[i] == predicted[i])} for i in right + wrong]
