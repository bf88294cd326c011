"""The tokenizer loaded alike at every stage, and texts tokenized once for training.

:func:`tokenize_and_cut` encodes each text once, without truncation, and cuts the rows that are
too long exactly as the tokenizer's own truncation would: the untruncated length says which rows
lost text (the truncation figure and check), so no second, truncated pass is needed.
:func:`tokenizing_processes` spreads large data over the CPU cores.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from transformers import AutoTokenizer

if TYPE_CHECKING:
    from datasets import DatasetDict

    from finetune_assets.recipes import Recipe

PARALLEL_FROM_ROWS = 50_000  # below this, starting worker processes costs more than it saves
MAX_PROCESSES = 8


def load_tokenizer(location: str, recipe: Recipe):
    """The tokenizer of ``location``; models without a pad token pad with EOS (masked by attention)."""
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=recipe.trust_remote_code)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenize_and_cut(tokenizer, texts: list[str], max_length: int, target: bool = False) -> dict[str, list]:
    """``texts`` tokenized once (as targets when ``target``), each row cut to ``max_length`` tokens
    the way ``truncation=True`` cuts it: the special tokens at both ends stay, the text loses tokens
    on the tokenizer's ``truncation_side``. ``truncated`` says which rows lost text."""
    encoded = dict(tokenizer(**{"text_target" if target else "text": texts}))
    lead, trail = _special_ends(tokenizer, target)
    budget = max(max_length - lead - trail, 0)  # text tokens a cut row keeps
    keep_start = tokenizer.truncation_side != "left"
    truncated = []
    for row, ids in enumerate(encoded["input_ids"]):
        size = len(ids)
        truncated.append(size > max_length)
        if size > max_length:
            kept = slice(lead, lead + budget) if keep_start else slice(size - trail - budget, size - trail)
            for values in encoded.values():
                values[row] = values[row][:lead] + values[row][kept] + values[row][size - trail :]
    return {**encoded, "truncated": truncated}


def _special_ends(tokenizer, target: bool) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after a text ([CLS] ... [SEP]: 1, 1)."""
    mask = tokenizer(**{"text_target" if target else "text": "a"}, return_special_tokens_mask=True)
    mask = mask["special_tokens_mask"]
    text = [i for i, special in enumerate(mask) if not special]
    return text[0], len(mask) - 1 - text[-1]


def tokenizing_processes(splits: DatasetDict) -> int | None:
    """Worker processes for ``datasets.map`` over ``splits``: none below :data:`PARALLEL_FROM_ROWS`
    rows in all, else one per CPU core (at most :data:`MAX_PROCESSES`)."""
    rows = sum(len(split) for split in splits.values())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, MAX_PROCESSES) if rows >= PARALLEL_FROM_ROWS and cores > 1 else None
