"""Packed causal-LM training (``training.packing: true``): whole examples packed into rows of
``training.max_length``, no token attending across examples, the loss on the answers as before.

Which examples share a row is TRL's ``pack_dataset`` (best fit decreasing: whole examples, longest
first, each into the row it fills best; none is cut, since :mod:`.chat` already fits every example
into ``max_length``). Each packed row is what transformers' ``DataCollatorWithFlattening`` makes of
its examples: their tokens end to end, position ids that restart at 0 with every example, and the
first label of every example set to -100, so the last token of one example is never taught to
predict the first of the next.

Transformers then keeps the examples apart by itself: with position ids and no attention mask,
``masking_utils.find_packed_sequence_indices`` reads the example boundaries off the position ids
and ``create_causal_mask`` builds a block-diagonal causal mask, for sdpa and eager attention alike
(flash attention reads the same position ids). Two conditions, both kept by :class:`PackedCollator`:

- no attention mask: a batch's shorter rows are padded at their end with one more "example" of
  their own (positions from 0, labels -100), so padding attends to padding only and carries no loss;
- no KV cache: a model whose config has ``use_cache`` on (Llama's default) creates an empty cache
  in training too, and with a cache the mask is plain causal over the whole row; every batch
  therefore says ``use_cache=False``.

Under packing ``training.batch_size`` counts packed rows, as TRL's ``SFTTrainer`` does: each
optimizer step sees several examples per row, and an epoch takes fewer steps. The figures say how
many examples a row holds and the padding share before and after (:func:`padding_share`).
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetune_assets.errors import RecipeError
from finetune_assets.tasks.causal_lm import answer_logits
from finetune_assets.tasks.causal_lm.chat import IGNORE

if TYPE_CHECKING:
    from datasets import Dataset

    from finetune_assets.recipes import Recipe
    from finetune_assets.recipes.schema import TrainingSpec

PACKED_COLUMNS = ("input_ids", "labels", "position_ids")


def require_packer(recipe: Recipe) -> None:
    """Refuse ``training.packing: true`` where TRL (the ``preference`` extra), whose ``pack_dataset``
    packs the rows, is not installed: before any data is read, not at the training step."""
    if recipe.training.packing and importlib.util.find_spec("trl") is None:
        raise RecipeError(
            f"{recipe.source_file.name}: training.packing: true packs rows with TRL's pack_dataset, and trl "
            "is not installed; install the project's preference extra (.[preference], which brings trl) or "
            "set training.packing: false"
        )


def pack(rows: Dataset, max_length: int) -> Dataset:
    """``rows`` (one example each, with ``input_ids`` and ``labels``) packed into rows of at most
    ``max_length`` tokens with ``input_ids``, ``labels``, ``position_ids`` and ``examples``."""
    from datasets import Dataset
    from transformers import DataCollatorWithFlattening
    from trl import pack_dataset

    binned = pack_dataset(rows.select_columns(["input_ids", "labels"]), max_length, strategy="bfd")
    flatten = DataCollatorWithFlattening(return_tensors="np")
    packed = {name: [] for name in (*PACKED_COLUMNS, "examples")}
    for row in binned:
        starts = [0, *itertools.accumulate(row["seq_lengths"])]
        examples = [
            {"input_ids": row["input_ids"][a:b], "labels": row["labels"][a:b]} for a, b in itertools.pairwise(starts)
        ]
        flat = flatten(examples)
        for name in PACKED_COLUMNS:
            packed[name].append(flat[name][0].tolist())
        packed["examples"].append(len(examples))
    return Dataset.from_dict(packed)


class PackedCollator:
    """Packed rows into a batch: each padded at its end to the batch's longest with an example of its
    own (pad tokens at positions 0, 1, ..., labels -100), no attention mask, no KV cache."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(row["input_ids"]) for row in rows)
        batch = {name: [] for name in PACKED_COLUMNS}
        for row in rows:
            pad = width - len(row["input_ids"])
            batch["input_ids"].append(list(row["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(row["labels"]) + [IGNORE] * pad)
            batch["position_ids"].append(list(row["position_ids"]) + list(range(pad)))
        return {**{name: torch.tensor(values) for name, values in batch.items()}, "use_cache": False}


@dataclass(frozen=True)
class Packed:
    """The train and validation rows packed, their collator, and what packing did (figures)."""

    rows: tuple[Dataset, Dataset]
    collator: PackedCollator | answer_logits.AnswerLogits
    figures: dict


def pack_for_training(rows: tuple[Dataset, Dataset], tokenizer, model, spec: TrainingSpec, processes: int) -> Packed:
    """The training and validation rows packed for the Trainer, their collator (logits at the answers
    only where ``model`` allows it: :mod:`.answer_logits`), and the padding share of one epoch of
    batches unpacked (each padded to its longest row) and packed."""
    train, validation = (pack(split, spec.max_length) for split in rows)
    per_device = max(1, spec.batch_size // processes)
    before = padding_share(rows[0]["input_ids"], per_device, spec.group_by_length, spec.seed)
    after = padding_share(train["input_ids"], per_device, spec.group_by_length, spec.seed)
    figures = {
        "packed_rows": len(train),
        "examples_per_packed_row": round(len(rows[0]) / len(train), 2),
        "padding_share_unpacked": round(before, 4),
        "padding_share_packed": round(after, 4),
    }
    collator = answer_logits.for_training(PackedCollator(tokenizer.pad_token_id), model)
    return Packed((train, validation), collator, figures)


def padding_share(token_rows: list[list[int]], batch_size: int, grouped: bool, seed: int) -> float:
    """The share of pad tokens in one epoch of batches of ``batch_size`` rows, each padded to its
    longest row, the batches drawn as the Trainer draws them: length-grouped
    (``training.group_by_length``, transformers' ``LengthGroupedSampler``) or at random, seeded."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = [len(tokens) for tokens in token_rows]
    generator = torch.Generator().manual_seed(seed)
    if grouped:
        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
    else:
        order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1 - sum(lengths) / padded
