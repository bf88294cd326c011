"""TRL's preference trainers as the training process runs them: which class, which settings, which rows.

``dpo`` is TRL's ``DPOTrainer`` (losses ``sigmoid``, ``ipo``, ``hinge``), ``kto`` its
``KTOTrainer``, ``orpo`` the ``ORPOTrainer`` that TRL 1.x keeps under ``trl.experimental``. The
rows go to them in TRL's conversational form (the prompt as messages, each answer as one
assistant message), so TRL renders them with the tokenizer's chat template, as evaluation and the
export do, and its collator puts the loss on the answer tokens only. KTO gets unpaired rows: each
pair is split into a desirable and an undesirable completion, as TRL's own
``unpair_preference_dataset`` does, and unpaired rows stay as they are.

With LoRA the trainer is handed the base model and the adapter's config, never a model already
wrapped: TRL then wraps it itself and, having no reference model, scores the reference by turning
the adapter off (``use_adapter(model, None)``), so the reference is the base weights without a
second copy in memory. (Handed a wrapped model, TRL would add a copy of the adapter as the
reference instead.) Full fine-tuning gets a frozen copy of the starting model as its reference,
which TRL loads; ORPO needs none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune_assets.errors import DataError
from finetune_assets.tasks.causal_lm import chat
from finetune_assets.tasks.instruction.conversations import turns_of

if TYPE_CHECKING:
    from datasets import Dataset

    from finetune_assets.recipes import Recipe

PAIRED_METHODS = ("dpo", "orpo")


def classes(method: str) -> tuple[type, type]:
    """The trainer class and its config class for ``method``."""
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer, ORPOConfig


def config_arguments(recipe: Recipe) -> dict:
    """The recipe's ``preference`` settings as the config class's arguments. DPO and ORPO draw
    batches at random (TRL tokenizes the rows itself, so there is no length column to group by);
    KTO reads them in order, which its KL estimate needs, from rows :func:`trl_rows` shuffled."""
    spec = recipe.preference
    common = {"beta": spec.beta, "max_length": recipe.training.max_length, "train_sampling_strategy": "random"}
    if spec.method == "dpo":
        return {**common, "loss_type": [spec.loss_type], "label_smoothing": spec.label_smoothing}
    if spec.method == "kto":
        weights = {"desirable_weight": spec.desirable_weight, "undesirable_weight": spec.undesirable_weight}
        return {**common, **weights, "train_sampling_strategy": "sequential"}
    return common


def trl_rows(rows: Dataset, recipe: Recipe, split: str) -> Dataset:
    """``rows`` (tokenized splits with the canonical columns) in the form the recipe's trainer reads."""
    from datasets import Dataset

    method = recipe.preference.method
    unpaired = len(rows) - sum(rows["paired"])
    if method in PAIRED_METHODS and unpaired:
        raise DataError(
            f"{recipe.source_file.name}: preference.method {method} trains on pairs, and {unpaired} of the "
            f"{len(rows)} {split} rows hold one answer with a label (KTO's form); use method kto, or give those "
            "rows a rejected answer"
        )
    records = [
        _record(row, method) for row in rows.select_columns(["prompt", "system", "history", "chosen", "rejected"])
    ]
    examples = Dataset.from_list([example for pair in records for example in pair])
    # KTO estimates its KL term from each example's neighbours in a batch: a pair's two halves
    # must not sit side by side
    return examples.shuffle(seed=recipe.training.seed) if method == "kto" else examples


def _record(row: dict, method: str) -> list[dict]:
    """One canonical row as the trainer's example(s): a pair, or for KTO one example per answer."""
    prompt = chat.conversation(row["prompt"], None, row["system"], turns_of(row["history"] or "[]"))
    if method in PAIRED_METHODS:
        return [{"prompt": prompt, "chosen": _said(row["chosen"]), "rejected": _said(row["rejected"])}]
    answers = ((row["chosen"], True), (row["rejected"], False))
    return [{"prompt": prompt, "completion": _said(text), "label": label} for text, label in answers if text]


def _said(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]
