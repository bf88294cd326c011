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

    def canonical_rows(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        names = _label_names(self.recipe)
        lookup = _label_lookup(self.recipe, names)
        frame = self.select_columns(raw)
        raw_labels = frame["label"].map(_normalise_label)
        excluded = raw_labels.isin({_normalise_label(v) for v in self.recipe.dataset.drop_labels})
        unknown = ~excluded & ~raw_labels.isin(lookup)
        if unknown.any():
            sample = frame["label"][unknown]
            shown = ", ".join(f"row {i}: {v!r}" for i, v in sample.head(5).items())
            raise DataError(
                f"{unknown.sum()} row(s) have a label outside the recipe's mapping ({shown}). Known: "
                f"{sorted(lookup)}. Add it to dataset.label_aliases or dataset.drop_labels."
            )
        dropped = {"label excluded by recipe": frame[excluded]}
        kept = frame[~excluded].copy()
        kept["label"] = raw_labels[~excluded].map(lookup).astype("int64")
        return kept, dropped

    def schema(self):
        label_ids = list(range(len(_label_names(self.recipe))))
        length = self.text_length()

        class ClassificationRows(pa.DataFrameModel):
            """Cleaned classification rows: text within the recipe's length bounds, a known label id."""

            text: Series[str] = pa.Field(str_length=length)
            label: Series[int] = pa.Field(isin=label_ids)

        return ClassificationRows

    def label_names(self) -> list[str] | None:
        return self.recipe.dataset.labels

    def stratify_column(self) -> str | None:
        return "label"

    def load_model(self, location: str, **options):
        from transformers import AutoModelForSequenceClassification

        names = _label_names(self.recipe)
        return AutoModelForSequenceClassification.from_pretrained(
            location,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            **weights_options(self.recipe),
            **options,
        )

    def tokenize(self, splits, tokenizer):
        from finetune_assets.models.tokenizer import tokenize_and_cut, tokenizing_processes

        max_length = self.recipe.training.max_length

        def encode(batch):
            encoded = tokenize_and_cut(tokenizer, batch["text"], max_length)
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            return encoded

        return splits.map(encode, batched=True, num_proc=tokenizing_processes(splits), desc="tokenizing")

    def collator(self, tokenizer, model):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def evaluate(self, model, tokenizer, test, workdir: Path) -> Evaluation:
        from transformers import Trainer, TrainingArguments

        from finetune_assets.inference import batching
        from finetune_assets.metrics import load_metric

        names = _label_names(self.recipe)
        args = batching.inference_arguments(TrainingArguments, workdir, self.recipe.training.eval_batch_size)
        trainer = Trainer(model=model, args=args, data_collator=self.collator(tokenizer, model))
        inputs = [c for c in ("input_ids", "attention_mask", "token_type_ids", "label") if c in test.column_names]
        logits = batching.predict_longest_first(trainer, test, inputs).astype(np.float64)
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        predicted, confidence = probabilities.argmax(-1), probabilities.max(-1)
        truth = np.asarray(test["label"])
        scores = load_metric("classification").compute(
            predictions=predicted.tolist(), references=truth.tolist(), num_labels=len(names)
        )
        metrics = {k: scores[k] for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro")}
        details = {k: scores[k] for k in ("precision", "recall", "f1", "support", "confusion_matrix")}
        details["majority_class_rate"] = float(np.bincount(truth).max() / len(truth))
        details["predictions"] = predicted.tolist()
        details["confidences"] = [round(float(c), 4) for c in confidence]  # the predicted label's probability
        details["accuracy_by_length"] = _accuracy_by_length(np.asarray(test["length"]), predicted == truth)
        details["confident_mistakes"] = _confident_mistakes(test["text"], truth, predicted, confidence, names)
        return Evaluation(metrics=metrics, details=details, samples=_samples(test["text"], truth, predicted, names))

    def report_plots(self, tuned: Evaluation, baseline: Evaluation, folder: Path) -> dict[str, Path]:
        from finetune_assets.report import plots

        names = _label_names(self.recipe)
        by_label = [
            {"name": name, "accuracy": recall, "rows": rows}
            for name, recall, rows in zip(names, tuned.details["recall"], tuned.details["support"])
        ]
        return {
            "confusion_matrix": plots.confusion_matrix(
                tuned.details["confusion_matrix"], names, "Fine-tuned model", folder / "confusion_matrix.png"
            ),
            "accuracy_by_label_and_length": plots.accuracy_breakdown(
                by_label,
                tuned.details["accuracy_by_length"],
                tuned.metrics["accuracy"],
                folder / "accuracy_by_label_and_length.png",
            ),
            "baseline_confusion_matrix": plots.confusion_matrix(
                baseline.details["confusion_matrix"],
                names,
                "Base model (untrained head)",
                folder / "baseline_confusion_matrix.png",
            ),
        }

    def report_metadata(self, tuned: Evaluation, baseline: Evaluation) -> dict:
        names = _label_names(self.recipe)
        details = tuned.details
        per_class = [
            {"label": names[i], "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": n}
            for i, (p, r, f, n) in enumerate(
                zip(details["precision"], details["recall"], details["f1"], details["support"])
            )
        ]
        matrix = [
            {"true \\ predicted": names[i], **{names[j]: n for j, n in enumerate(row)}}
            for i, row in enumerate(details["confusion_matrix"])
        ]
        majority = details["majority_class_rate"]
        return {
            "majority_class_rate": majority,
            "accuracy_points_over_majority": round(100 * (tuned.metrics["accuracy"] - majority), 2),
            "per_class": Markdown(markdown_table(per_class)),
            "confusion_matrix_table": Markdown(markdown_table(matrix)),
            "accuracy_by_length": Markdown(
                markdown_table(
                    [
                        {"input length": row["name"], "test rows": row["rows"], "accuracy": round(row["accuracy"], 4)}
                        for row in details["accuracy_by_length"]
                    ]
                )
            ),
            "most_confident_mistakes": Markdown(
                markdown_table(details["confident_mistakes"])
                if details["confident_mistakes"]
                else "no wrong prediction"
            ),
        }

    def prepare_export(self, model, tokenizer, folder: Path) -> None:
        """The tokenizer cuts at the recipe's ``max_length`` when asked to truncate, as training cut."""
        tokenizer.model_max_length = self.recipe.training.max_length

    def reload_cases(self, test, tuned: dict, rows: int) -> list[tuple]:
        """The rows the report was surest of, with the label it predicted: a nearly tied row could
        tip either way between a batched and a single-row pass in bf16, a sure one cannot."""
        names, details = _label_names(self.recipe), tuned["details"]
        surest = np.argsort(-np.asarray(details["confidences"]), kind="stable")[:rows]
        return [(test[int(i)]["text"], names[details["predictions"][int(i)]]) for i in surest]

    def answer(self, pipeline, asked) -> str:
        return pipeline(asked, truncation=True)[0]["label"]

    def usage_code(self, folder: str) -> str:
        return f"""from transformers import pipeline
classify = pipeline("text-classification", model="{folder}")
print(classify("A text to label", truncation=True))  # truncation: cut at max_length tokens, as in training"""

    def describe_data(self, frame: pd.DataFrame) -> dict[str, float | int]:
        names = _label_names(self.recipe)
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
            raise DataError(
                f"{recipe.source_file}: dataset.label_aliases.{alias}: '{target}' is not one of dataset.labels {names}"
            )
        lookup[_normalise_label(alias)] = lookup[_normalise_label(target)]
    return lookup


def _accuracy_by_length(lengths: np.ndarray, correct: np.ndarray, buckets: int = 4) -> list[dict]:
    """Accuracy per input-length bucket (tokens): edges at the quartiles of the test rows' lengths, so
    each bucket holds about a quarter of them; equal edges merge."""
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, buckets + 1), method="lower"))
    found, low = [], int(lengths.min())
    for high in edges[1:] if len(edges) > 1 else edges:
        inside = (lengths >= low) & (lengths <= high)
        found.append(
            {"name": f"{low}-{int(high)} tokens", "accuracy": float(correct[inside].mean()), "rows": int(inside.sum())}
        )
        low = int(high) + 1
    return found


def _confident_mistakes(texts, truth, predicted, confidence, names, shown: int = 8) -> list[dict]:
    """The wrong predictions the model was surest of: where it learned something misleading, or where
    the data's label is itself wrong."""
    wrong = [i for i in np.argsort(-confidence, kind="stable") if truth[i] != predicted[i]][:shown]
    return [
        {
            "text": texts[i][:160],
            "true label": names[truth[i]],
            "predicted": names[predicted[i]],
            "confidence": round(float(confidence[i]), 3),
        }
        for i in wrong
    ]


def _samples(texts, truth, predicted, names, per_kind: int = 4) -> list[dict]:
    """A few right and a few wrong predictions, in test order."""
    right = [i for i in range(len(truth)) if truth[i] == predicted[i]][:per_kind]
    wrong = [i for i in range(len(truth)) if truth[i] != predicted[i]][:per_kind]
    return [
        {
            "text": texts[i][:300],
            "label": names[truth[i]],
            "predicted": names[predicted[i]],
            "correct": bool(truth[i] == predicted[i]),
        }
        for i in right + wrong
    ]
