"""Inference in batches of similar length, with the results handed back in row order.

Evaluation and generation pad every batch to its longest row. Taking rows longest first puts rows
of similar length together, so a batch of short rows is not padded to the length of a long one;
tweets of 10 and 60 tokens in one batch would cost six times the arithmetic. The first batch is
the largest, so a batch size too big for memory fails at once rather than at the end. Every
caller gets its results back in the rows' own order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def longest_first(lengths: Sequence[int]) -> np.ndarray:
    """Row indices from the longest row to the shortest (rows of equal length keep their order)."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def inference_arguments(arguments_class, workdir: Path, batch_size: int, **extra):
    """Trainer arguments for prediction only: no trackers, no progress bars (the run log says what is
    scored), and pinned memory only where there is a GPU to copy batches to (torch warns otherwise)."""
    import torch

    return arguments_class(
        output_dir=str(workdir),
        per_device_eval_batch_size=batch_size,
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        **extra,
    )


def predict_longest_first(trainer, rows, columns: list[str]) -> np.ndarray:
    """``trainer.predict`` on ``rows`` (their ``columns``) taken longest first, which the Trainer's
    sequential evaluation sampler keeps; the predictions come back in row order."""
    order = longest_first(rows["length"])
    predictions = trainer.predict(rows.select(order).select_columns(columns)).predictions
    restored = np.empty_like(predictions)
    restored[order] = predictions
    return restored


def map_batches(lengths: Sequence[int], batch_size: int, run: Callable[[list[int]], list]) -> list:
    """``run(row indices)`` on batches of similar length, longest first; one result per row, in row
    order."""
    order = longest_first(lengths).tolist()
    results: list = [None] * len(order)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        for row, result in zip(rows, run(rows), strict=True):
            results[row] = result
    return results
