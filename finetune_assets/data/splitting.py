"""Train / validation / test split of the cleaned rows, reproducible by seed, stratified or grouped
when the task asks for it (grouped: rows sharing a key, e.g. answers to one prompt, stay together,
so a test row's key is never seen in training)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from sklearn.model_selection import train_test_split

from finetune_assets.errors import DataError

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe


def split_rows(
    rows: pd.DataFrame, recipe: Recipe, stratify: str | None, groups: pd.Series | None = None
) -> dict[str, pd.DataFrame]:
    spec = recipe.splits
    sizes = {"validation": round(len(rows) * spec.validation), "test": round(len(rows) * spec.test)}
    sizes["train"] = len(rows) - sizes["validation"] - sizes["test"]
    empty = [name for name, size in sizes.items() if size < 1]
    if empty:
        raise DataError(
            f"{recipe.source_file.name}: splits {spec.validation}/{spec.test} of {len(rows)} cleaned rows "
            f"leave {', '.join(empty)} empty; use more rows or larger split fractions"
        )
    try:
        rest, test = _split(rows, sizes["test"], stratify, spec.seed, groups)
        train, validation = _split(rest, sizes["validation"], stratify, spec.seed, groups)
    except ValueError as exc:
        raise DataError(
            f"{recipe.source_file.name}: cannot split {len(rows)} rows by '{stratify}' "
            f"({exc}); every class needs a few rows in each split"
        ) from None
    parts = {"train": train, "validation": validation, "test": test}
    if train.empty:
        raise DataError(
            f"{recipe.source_file.name}: {groups.nunique()} groups of rows are too few to "
            "fill train, validation and test; use more data or smaller split fractions"
        )
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


def _split(frame: pd.DataFrame, size: int, stratify: str | None, seed: int, groups: pd.Series | None):
    if groups is not None:
        return _group_split(frame, size, groups.loc[frame.index], seed)
    return train_test_split(frame, test_size=size, random_state=seed, stratify=frame[stratify] if stratify else None)


def _group_split(frame: pd.DataFrame, size: int, keys: pd.Series, seed: int):
    """Whole groups, in seeded random order, go to the held-out part until it has ``size`` rows."""
    counts = keys.value_counts().sort_index().sample(frac=1, random_state=seed)
    held = keys.isin(counts.index[(counts.cumsum() - counts) < size])
    return frame[~held], frame[held]
