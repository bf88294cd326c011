"""Packed causal-LM training (``training.packing: true``): whole examples packed into rows of
``training.max_length``, no token attending across examples, the loss on the answers as before.

Which examples share a row is TRL's ``pack_dataset`` (best fit decreasing: whole examples, longest
first, each into the row it fills best; none is cut, since :mod:`.chat` already fits every example
into ``max_length``). Each packed row is what transformers' ``DataCollatorWithFlattening`` makes of
its examples: their tokens end to end, position ids that restart at 0 with every example, and the
first label of every example set to -100, so the last token of one example is never taught to
predict the first of the next.

**The shared prompt, once per row.** Chat examples mostly begin with the same tokens: the chat
template's system prompt and the user turn's opening (24 of the 50 tokens of a ``chatbot_sft``
example, SmolLM2's default system prompt). A causal model's states at those tokens depend on them
alone, so they are the same in every example. Where the model's attention takes a boolean 4D mask
(``sdpa``, and the trainer's products on a CPU: :mod:`finetune_assets.models.attention`), a row
holds that shared beginning once (:func:`shared_prompt_length`, positions 0 to p-1), then each
example's own tokens with positions from p, and :class:`PackedCollator` passes the mask: each
token sees the shared beginning and the earlier tokens of its own example, nothing of another. Every
example then computes what it computes alone (the tests compare the logits), the loss and the
gradients are the same sums, and a row holds more examples for the same length. Only prompt tokens
are shared: the beginning stops before the first token any example learns to predict.

Elsewhere (eager or flash attention, which take no such mask) rows share nothing and transformers
keeps the examples apart by itself: with position ids and no attention mask,
``masking_utils.find_packed_sequence_indices`` reads the example boundaries off the position ids
and ``create_causal_mask`` builds a block-diagonal causal mask (flash attention reads the same
position ids). Two conditions, both kept by :class:`PackedCollator`:

- no attention mask: a batch's shorter rows are padded at their end with one more "example" of
  their own (positions from 0, labels -100), so padding attends to padding only and carries no loss;
- no KV cache: a model whose config has ``use_cache`` on (Llama's default) creates an empty cache
  in training too, and with a cache the mask is plain causal over the whole row; every batch
  therefore says ``use_cache=False``.

Under packing ``training.batch_size`` counts packed rows, as TRL's ``SFTTrainer`` does: each
optimizer step sees several examples per row, and an epoch takes fewer steps. The figures say how
many examples a row holds, the tokens shared, and the padding share before and after
(:func:`padding_share`).
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


def shared_prompt_length(*splits: Dataset) -> int:
    """How many tokens every row of ``splits`` begins with, all of them prompt: the longest common
    beginning of their ``input_ids``, cut so that every row keeps a token of its own and no row's
    first target lies in it or right after it (that token is predicted from the beginning's last
    position, which a packed row holds once for several examples)."""
    ids = [tokens for split in splits for tokens in split["input_ids"]]
    labels = [targets for split in splits for targets in split["labels"]]
    if not ids:
        return 0
    first, length = ids[0], min(len(tokens) for tokens in ids) - 1
    for tokens in ids[1:]:
        length = next((i for i in range(length) if tokens[i] != first[i]), length)
    for targets in labels:
        length = next((i for i in range(length + 1) if targets[i] != IGNORE), length + 1) - 1
    return max(length, 0)


def pack(rows: Dataset, max_length: int, shared: int = 0) -> Dataset:
    """``rows`` (one example each, with ``input_ids`` and ``labels``) packed into rows of at most
    ``max_length`` tokens with ``input_ids``, ``labels``, ``position_ids`` and ``examples``: the first
    ``shared`` tokens, which every row begins with (:func:`shared_prompt_length`), once at the start
    of each packed row, then each example's own tokens with positions from ``shared``."""
    from datasets import Dataset
    from transformers import DataCollatorWithFlattening
    from trl import pack_dataset

    packed = {name: [] for name in (*PACKED_COLUMNS, "examples")}
    if not len(rows):  # a split with no rows (TRL's packer needs one)
        return Dataset.from_dict(packed)
    columns = rows.select_columns(["input_ids", "labels"])
    if shared:
        columns = Dataset.from_dict({name: [values[shared:] for values in columns[name]] for name in columns.features})
    binned = pack_dataset(columns, max_length - shared, strategy="bfd")
    flatten = DataCollatorWithFlattening(return_tensors="np")
    beginning = rows[0]["input_ids"][:shared]
    for row in binned:
        starts = [0, *itertools.accumulate(row["seq_lengths"])]
        examples = [
            {"input_ids": row["input_ids"][a:b], "labels": row["labels"][a:b]} for a, b in itertools.pairwise(starts)
        ]
        flat = flatten(examples)
        packed["input_ids"].append(beginning + flat["input_ids"][0].tolist())
        packed["labels"].append([IGNORE] * shared + flat["labels"][0].tolist())
        packed["position_ids"].append(list(range(shared)) + (flat["position_ids"][0] + shared).tolist())
        packed["examples"].append(len(examples))
    return Dataset.from_dict(packed)


def examples_in(position_ids: list[int], shared: int) -> list[tuple[int, int]]:
    """The (start, end) of each example's own tokens in a packed row: after the ``shared``
    beginning, an example starts where the position ids go back to ``shared``."""
    starts = [i for i, position in enumerate(position_ids) if position == shared and i >= shared]
    return list(itertools.pairwise([*starts, len(position_ids)]))


class PackedCollator:
    """Packed rows into a batch: each padded at its end to the batch's longest with an example of its
    own (pad tokens at positions 0, 1, ..., labels -100), no KV cache; where the rows begin with
    ``shared`` tokens of prompt, the boolean 4D attention mask of :func:`attention_mask`, else none."""

    def __init__(self, pad_token_id: int, shared: int = 0):
        self.pad_token_id = pad_token_id
        self.shared = shared

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(row["input_ids"]) for row in rows)
        batch = {name: [] for name in PACKED_COLUMNS}
        for row in rows:
            pad = width - len(row["input_ids"])
            batch["input_ids"].append(list(row["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(row["labels"]) + [IGNORE] * pad)
            batch["position_ids"].append(list(row["position_ids"]) + list(range(pad)))
        tensors = {name: torch.tensor(values) for name, values in batch.items()}
        if self.shared:
            tensors["attention_mask"] = attention_mask([row["position_ids"] for row in rows], self.shared, width)
        return {**tensors, "use_cache": False}


def attention_mask(position_ids: list[list[int]], shared: int, width: int):
    """``(rows, 1, width, width)``, True where a query may attend to a key: causal, and within the
    query's own example or the row's ``shared`` beginning; the padding after a row's end attends to
    itself alone."""
    import torch

    owner = torch.full((len(position_ids), width), -1)  # -1: padding; 0: the shared beginning
    for row, positions in enumerate(position_ids):
        for number, (start, end) in enumerate(examples_in(positions, shared), start=1):
            owner[row, start:end] = number
        owner[row, :shared] = 0
    query, key = owner[:, :, None], owner[:, None, :]
    allowed = (query == key) | ((key == 0) & (query > 0))
    return (allowed & torch.ones(width, width, dtype=torch.bool).tril())[:, None]


@dataclass(frozen=True)
class Packed:
    """The train and validation rows packed, their collator, and what packing did (figures)."""

    rows: tuple[Dataset, Dataset]
    collator: PackedCollator | answer_logits.AnswerLogits
    figures: dict


def takes_a_shared_prompt(model) -> bool:
    """Whether ``model``'s attention takes the boolean 4D mask a shared beginning needs: ``sdpa``
    (which the trainer's products on a CPU replace with the same masks), not eager attention, which
    adds a mask to its scores, nor flash attention, which takes none."""
    from finetune_assets.models import attention

    return getattr(model.config, "_attn_implementation", None) in ("sdpa", attention.NAME)


def shared_prompt_for(model, *splits: Dataset) -> int:
    """The tokens of prompt a packed row holds once for its examples: those every row of ``splits``
    begins with where ``model`` takes the mask that needs (:func:`takes_a_shared_prompt`), else none."""
    return shared_prompt_length(*splits) if takes_a_shared_prompt(model) else 0


def pack_for_training(rows: tuple[Dataset, Dataset], tokenizer, model, spec: TrainingSpec, processes: int) -> Packed:
    """The training and validation rows packed for the Trainer (their shared prompt once per row
    where ``model`` takes the mask), their collator (logits at the answers only where ``model``
    allows it: :mod:`.answer_logits`), and the padding share of one epoch of batches unpacked (each
    padded to its longest row) and packed."""
    shared = shared_prompt_for(model, *rows)
    train, validation = (pack(split, spec.max_length, shared) for split in rows)
    per_device = max(1, spec.batch_size // processes)
    example_ids, packed_ids = rows[0]["input_ids"], train["input_ids"]
    before = padding_share(example_ids, per_device, spec.group_by_length, spec.seed)
    after = padding_share(packed_ids, per_device, spec.group_by_length, spec.seed)
    figures = {
        "packed_rows": len(train),
        "examples_per_packed_row": round(len(rows[0]) / len(train), 2),
        "shared_prompt_tokens": shared,
        "packed_tokens_per_example_token": round(sum(map(len, packed_ids)) / sum(map(len, example_ids)), 4),
        "padding_share_unpacked": round(before, 4),
        "padding_share_packed": round(after, 4),
    }
    collator = answer_logits.for_training(PackedCollator(tokenizer.pad_token_id, shared), model)
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
