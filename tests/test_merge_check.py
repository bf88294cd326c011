"""The export's merge check: the merged model loaded back from disk against the adapter on its base,
and the exported tokenizer against training's tokens; then whole runs in which a forced bad merge
is caught, reported as the asset's own check and never promoted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import NO_QUALITY_GATES
from datasets import Dataset, DatasetDict
from peft import LoraConfig, get_peft_model

from finetune_assets.export import merge_check
from finetune_assets.models import methods
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.recipes import load_recipe
from finetune_assets.tasks import get_task
from finetune_assets.tasks.causal_lm.chat import PLAIN_TEMPLATE

ROWS = [
    {"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}.", "system": "", "history": "[]"} for i in range(6)
]


def lora_checkpoint(folder: Path, tiny_llama: Path, **settings):
    """A recipe in ``folder`` (LoRA on the tiny Llama, plus ``settings``), a checkpoint of it with
    non-zero adapters, and tokenized test rows."""
    (folder / "tiny.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "instruction",
                "base_model": str(tiny_llama),
                "dataset": {"source": "unused.jsonl"},
                "method": "lora",
                "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                "training": {"max_length": 64},
                **settings,
            }
        )
    )
    recipe = load_recipe(folder / "tiny.yaml")
    tokenizer = load_tokenizer(str(tiny_llama), recipe)
    rows = get_task(recipe).tokenize(DatasetDict({"test": Dataset.from_list(ROWS)}), tokenizer)["test"]
    torch.manual_seed(0)
    adapted = get_peft_model(
        get_task(recipe).load_model(str(tiny_llama)),
        LoraConfig(
            task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        ),
    )
    checkpoint = folder / "checkpoint"
    adapted.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    return recipe, checkpoint, rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama):
    """A recipe, a LoRA checkpoint on the tiny Llama with non-zero adapters, and tokenized test rows."""
    return lora_checkpoint(tmp_path_factory.mktemp("merge"), tiny_llama)


def export(recipe, checkpoint: Path, folder: Path, spoil=None) -> Path:
    """The export as the pipeline writes it (merged model, prepared tokenizer), spoiled if asked."""
    model = methods.load_trained(checkpoint, get_task(recipe))
    tokenizer = load_tokenizer(str(checkpoint), recipe)
    get_task(recipe).prepare_export(model, tokenizer, folder)
    if spoil:
        spoil(model, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_faithful_merge_passes(trained, tmp_path):
    recipe, checkpoint, rows = trained
    outcome = merge_check.verify(get_task(recipe), checkpoint, export(recipe, checkpoint, tmp_path), rows)
    assert outcome["passed"], outcome["description"]
    figures = outcome["figures"]
    assert figures["probe_rows"] == 4 and figures["same_greedy_answers"] == "4 of 4"
    assert figures["same_tokenization"] == "4 of 4"
    assert figures["logits_max_abs_difference"] < figures["logits_tolerance"]


def test_the_check_compares_with_the_adapter_not_the_base(trained, tmp_path):
    """Exporting the base without the adapter (a merge that lost it) is caught."""
    recipe, checkpoint, rows = trained
    folder = tmp_path / "base_only"
    model = get_task(recipe).load_model(recipe.base_model)
    tokenizer = load_tokenizer(str(checkpoint), recipe)
    get_task(recipe).prepare_export(model, tokenizer, folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    outcome = merge_check.verify(get_task(recipe), checkpoint, folder, rows)
    assert not outcome["passed"] and "its logits differ from the trained model's" in outcome["description"]


def test_corrupted_weights_and_a_changed_template_are_caught(trained, tmp_path):
    recipe, checkpoint, rows = trained

    def corrupt(model, tokenizer):
        with torch.no_grad():
            model.model.layers[0].self_attn.q_proj.weight.mul_(1.5)

    def retemplate(model, tokenizer):
        tokenizer.chat_template = PLAIN_TEMPLATE

    bad_weights = merge_check.verify(
        get_task(recipe), checkpoint, export(recipe, checkpoint, tmp_path / "weights", corrupt), rows
    )
    assert not bad_weights["passed"]
    assert "is not the model that was trained and evaluated: its logits differ" in bad_weights["description"]
    assert "It is not promoted" in bad_weights["description"]
    bad_template = merge_check.verify(
        get_task(recipe), checkpoint, export(recipe, checkpoint, tmp_path / "template", retemplate), rows
    )
    assert not bad_template["passed"]
    assert (
        "its tokenizer (chat template included) turns 4 of 4 test rows into other tokens" in bad_template["description"]
    )
    assert bad_template["figures"]["same_tokenization"] == "0 of 4"


# --- whole runs: the check on the asset, and the gate ----------------------------------------


def write_project(root: Path, base: Path, max_new_tokens: int) -> None:
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    records = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"It is {2 * i}."},
            ]
        }
        for i in range(40)
    ]
    (root / "recipes" / "sums.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (root / "recipes" / "sums.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "instruction",
                "base_model": str(base),
                "dataset": {"source": "sums.jsonl"},
                "splits": {"validation": 0.2, "test": 0.25},
                "checks": {"min_rows_per_split": 5, **NO_QUALITY_GATES},
                "method": "lora",
                "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                "training": {"max_length": 48, "learning_rate": 1e-2, "batch_size": 8},
                "generation": {"max_new_tokens": max_new_tokens},
                "evaluation": {"num_examples": 2},
                "promotion": {"min_test_rows": 5},
            }
        )
    )


def check_evaluations(run) -> dict:
    return {e.asset_check_key.name: e for e in run.result.get_asset_check_evaluations()}


def test_a_bad_merge_is_reported_on_the_asset_and_never_promoted(
    tmp_path, tiny_llama, materialize_recipes, monkeypatch
):
    write_project(tmp_path, tiny_llama, max_new_tokens=4)
    good = materialize_recipes(tmp_path)
    assert check_evaluations(good)["merge_verified"].passed
    exported = good.metadata["exported_model"]
    assert exported["decision"].value == "promoted (first export)"
    assert exported["merge_check_same_greedy_answers"].value == "4 of 4"
    champion = (tmp_path / "artifacts" / "sums" / "exported_model" / "champion.json").read_text()

    real_load_trained = methods.load_trained

    def spoiled_merge(*args, **kwargs):
        model = real_load_trained(*args, **kwargs)
        with torch.no_grad():
            model.lm_head.weight.add_(0.5)  # tied to the embeddings: every logit moves
        return model

    monkeypatch.setattr(methods, "load_trained", spoiled_merge)
    write_project(tmp_path, tiny_llama, max_new_tokens=6)  # a new evaluation and export, same training
    bad = materialize_recipes(tmp_path)
    failure = next(e for e in bad.result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "sums__exported_model", "the blocking check fails the run"
    evaluation = check_evaluations(bad)["merge_verified"]
    assert not evaluation.passed and evaluation.severity.value == "ERROR"
    assert "is not the model that was trained and evaluated" in evaluation.description
    decision = bad.metadata["exported_model"]["decision"].value
    assert decision.startswith("not promoted: check exported_model/merge_verified (ERROR)")
    assert (tmp_path / "artifacts" / "sums" / "exported_model" / "champion.json").read_text() == champion
