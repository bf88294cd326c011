"""Train / validation / test splits: sizes, stratification, reproducibility, refusals."""

from __future__ import annotations

import pandas as pd
import pytest

from finetune_assets.data.splitting import split_rows
from finetune_assets.errors import DataError


def rows(positive: int, negative: int) -> pd.DataFrame:
    labels = [1] * positive + [0] * negative
    return pd.DataFrame({"text": [f"row {i}" for i in range(len(labels))], "label": labels})


def as_sets(splits: dict[str, pd.DataFrame]) -> dict[str, set[str]]:
    return {name: set(part["text"]) for name, part in splits.items()}


def test_sizes_add_up_and_splits_are_disjoint(make_recipe):
    data = rows(70, 130)
    splits = split_rows(data, make_recipe(splits={"validation": 0.1, "test": 0.2}), "label")
    assert list(splits) == ["train", "validation", "test"]
    assert {name: len(part) for name, part in splits.items()} == {"train": 140, "validation": 20, "test": 40}
    sets = as_sets(splits)
    assert sets["train"].isdisjoint(sets["validation"])
    assert sets["train"].isdisjoint(sets["test"])
    assert sets["validation"].isdisjoint(sets["test"])
    assert sets["train"] | sets["validation"] | sets["test"] == set(data["text"])
    for part in splits.values():
        assert list(part.columns) == ["text", "label"]
        assert list(part.index) == list(range(len(part)))


def test_input_not_modified(make_recipe):
    data = rows(30, 30)
    before = data.copy()
    split_rows(data, make_recipe(), "label")
    pd.testing.assert_frame_equal(data, before)


def test_stratified_proportions_kept(make_recipe):
    data = rows(250, 750)  # 25 % positive
    splits = split_rows(data, make_recipe(splits={"validation": 0.1, "test": 0.1, "seed": 3}), "label")
    for name, part in splits.items():
        assert part["label"].mean() == pytest.approx(0.25, abs=0.02), name


def test_stratified_keeps_rare_class_in_every_split(make_recipe):
    data = rows(10, 190)  # 5 % positive: an unstratified split would often miss it
    for seed in range(5):
        splits = split_rows(data, make_recipe(splits={"validation": 0.1, "test": 0.1, "seed": seed}), "label")
        assert all(part["label"].sum() >= 1 for part in splits.values())
        assert splits["validation"]["label"].sum() == 1
        assert splits["test"]["label"].sum() == 1


def test_same_seed_same_split(make_recipe):
    data = rows(50, 50)
    first = split_rows(data, make_recipe("a", splits={"seed": 7}), "label")
    second = split_rows(data, make_recipe("b", splits={"seed": 7}), "label")
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])


def test_different_seed_different_split(make_recipe):
    data = rows(50, 50)
    first = split_rows(data, make_recipe("a", splits={"seed": 7}), "label")
    second = split_rows(data, make_recipe("b", splits={"seed": 8}), "label")
    assert as_sets(first)["test"] != as_sets(second)["test"]
    assert as_sets(first)["validation"] != as_sets(second)["validation"]


def test_unstratified_split(make_recipe):
    data = rows(20, 20)
    splits = split_rows(data, make_recipe(splits={"validation": 0.25, "test": 0.25}), None)
    assert {name: len(part) for name, part in splits.items()} == {"train": 20, "validation": 10, "test": 10}


@pytest.mark.parametrize(
    "fractions, positive, negative, stratify, empty",
    [
        ({"validation": 0.1, "test": 0.1}, 2, 2, "label", {"validation", "test"}),
        ({"validation": 0.01, "test": 0.5}, 5, 5, None, {"validation"}),
        ({"validation": 0.45, "test": 0.45}, 1, 1, None, {"train"}),
    ],
    ids=["validation_and_test", "validation_only", "train_only"],
)
def test_tiny_data_names_the_empty_splits(make_recipe, fractions, positive, negative, stratify, empty):
    recipe = make_recipe(splits=fractions)
    with pytest.raises(DataError) as info:
        split_rows(rows(positive, negative), recipe, stratify)
    message = str(info.value)
    assert "test_recipe.yaml" in message
    leaves = message.split("leave", 1)[1]
    for split in ("train", "validation", "test"):
        assert (split in leaves) == (split in empty), split


def test_class_too_small_to_stratify(make_recipe):
    data = rows(1, 39)  # one positive row cannot be in train, validation and test
    with pytest.raises(DataError, match="'label'"):
        split_rows(data, make_recipe(splits={"validation": 0.25, "test": 0.25}), "label")
