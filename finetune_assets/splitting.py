"""Train / validation / test split of the cleaned rows, reproducible by seed and stratified when the
task asks for it."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from finetune_assets.errors import DataError
from finetune_assets.recipe import Recipe


def split_rows(rows: pd.DataFrame, recipe: Recipe, stratify: str | None) -> dict[str, pd.DataFrame]:
    spec = recipe.splits
    sizes = {"validation": round(len(rows) * spec.validation), "test": round(len(rows) * spec.test)}
    sizes["train"] = len(rows) - sizes["validation"] - sizes["test"]
    empty = [name for name, size in sizes.items() if size < 1]
    if empty:
        raise DataError(
            f"{recipe.source_file.name}: splits {spec.validation}/{spec.test} of {len(rows)} cleaned rows "
            f"leave {', '.join(empty)} empty; use more rows or larger split fractions")
    try:
        rest, test = _split(rows, sizes["test"], stratify, spec.seed)
        train, validation = _split(rest, sizes["validation"], stratify, spec.seed)
    except ValueError as exc:
        raise DataError(f"{recipe.source_file.name}: cannot split {len(rows)} rows by '{stratify}' "
                        f"({exc}); every class needs a few rows in each split") from None
    return {name: part.reset_index(drop=True)
            for name, part in (("train", train), ("validation", validation), ("test", test))}


def _split(frame: pd.DataFrame, size: int, stratify: str | None, seed: int):
    return train_test_split(frame, test_size=size, random_state=seed,
                            stratify=frame[stratify] if stratify else None)
