"""Shared helpers: every test writes its own small recipe and data files under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from finetune_assets.recipe import Recipe, load_recipe

BASE_RECIPE = {
    "task": "classification",
    "base_model": "some-org/some-model",
    "dataset": {
        "source": "data.csv",
        "columns": {"text": "review", "label": "sentiment"},
        "labels": ["negative", "positive"],
        "label_aliases": {"pos": "positive", "neg": "negative"},
        "drop_labels": ["neutral"],
    },
}


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def make_recipe(tmp_path: Path):
    """``make_recipe(cleaning={...}, splits={...})``: a Recipe loaded from a YAML file in tmp_path."""

    def make(name: str = "test_recipe", **overrides) -> Recipe:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_merge(BASE_RECIPE, overrides)), encoding="utf-8")
        return load_recipe(path)

    return make
