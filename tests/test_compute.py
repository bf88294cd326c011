"""How the Trainer computes a step (finetune_assets/training/compute.py): the fused AdamW where torch
has it, and ``training.compile`` (auto: off where compile does not pay back; true: compiled, the
same validation loss as eager), each recorded with its reason."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from test_precision import tiny_splits
from transformers import TrainerCallback

from finetune_assets.models import precision
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.chain import CHAIN
from finetune_assets.tasks.classification import Classification
from finetune_assets.training import compute
from finetune_assets.training.trainer import train

EAGER_TOLERANCE = 1e-3  # relative: compiled kernels fuse and reorder float sums, nothing more


class OptimizerSeen(TrainerCallback):
    """Keeps the optimizer the Trainer built (accelerate's wrapper taken off)."""

    optimizer = None

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.optimizer = getattr(optimizer, "optimizer", optimizer)


def tiny_run(make_recipe, tiny_bert, tmp_path, name: str, **training):
    """Train the tiny BERT on a few sentences in float32; the figures and the optimizer it used."""
    recipe = make_recipe(
        name,
        base_model=str(tiny_bert),
        training={"batch_size": 8, "eval_batch_size": 4, "logging_steps": 1, **training},
    )
    task = Classification(recipe)
    splits = tiny_splits(task, tiny_bert, tmp_path / f"{name}-splits")
    (tmp_path / name).mkdir()
    seen = OptimizerSeen()
    figures = train(task, splits, tmp_path / name, logging.getLogger("compute-test"), callbacks=[seen])
    return figures, seen.optimizer


def test_auto_compile_stays_off_where_it_cannot_pay_back_and_says_why():
    never = compute.compile_model("auto", "cpu", 10**6)
    assert never.value is False and never.reason.startswith("auto: never pays back on cpu")
    assert "Zen 4), 2 cores, quiet, 2026-12-07" in never.reason, "the reason names the measurement it rests on"
    unmeasured = compute.compile_model("auto", "tpu", 10**6)
    assert unmeasured.value is False and "no compile figures measured on tpu" in unmeasured.reason
    assert compute.compile_model(True, "cpu", 1) == compute.Choice(True, "set by the recipe")


def test_auto_compiles_a_run_long_enough_to_repay_the_compile_twice(monkeypatch):
    slow, quick = compute.Measured(60.0, 0.5, 0.3, "a test figure"), compute.Measured(10.0, 0.5, 0.3, "another")
    monkeypatch.setitem(compute.MEASURED, "cuda", (quick, slow))
    assert slow.payback_steps() == pytest.approx(300), "the workload slowest to repay the compile decides"
    assert compute.compile_model("auto", "cuda", 599).value is False
    long = compute.compile_model("auto", "cuda", 600)
    assert long.value is True and "600 optimizer steps against 600 needed" in long.reason


def test_optimizer_steps_count_batches_accumulations_and_epochs():
    assert compute.optimizer_steps(rows=24, batch_size=8, accumulation=1, epochs=1) == 3
    assert compute.optimizer_steps(rows=25, batch_size=8, accumulation=2, epochs=2) == 4


def test_a_short_run_trains_eager_with_the_fused_adamw_and_records_both(
    make_recipe, tiny_bert, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv(precision.CPU_OVERRIDE, "0")
    with caplog.at_level(logging.INFO, logger="compute-test"):
        figures, optimizer = tiny_run(make_recipe, tiny_bert, tmp_path, "eager")
    announced = next(r.getMessage() for r in caplog.records if "parameters trainable" in r.getMessage())
    assert "adamw_torch_fused (torch has a fused AdamW" in announced and "torch.compile off (auto:" in announced
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert figures["optimizer"] == "adamw_torch_fused" and f"fused AdamW for {device}" in figures["optimizer_reason"]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    assert figures["torch_compile"] is False and figures["torch_compile_reason"].startswith("auto:")
    assert figures["optimizer_steps"] == compute.optimizer_steps(24, 8, 1, 1), "auto judged the run's real steps"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's eager run is the reference")
def test_compile_true_compiles_and_trains_to_the_eager_validation_loss(make_recipe, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv(precision.CPU_OVERRIDE, "0")  # float32 both ways: only the kernels differ
    eager, _ = tiny_run(make_recipe, tiny_bert, tmp_path, "eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled, _ = tiny_run(make_recipe, tiny_bert, tmp_path, "compiled", compile=True)
    assert compiled["torch_compile"] is True and compiled["torch_compile_reason"] == "set by the recipe"
    assert eager["dropout_layers_16bit_draws"] > 0 and compiled["dropout_layers_16bit_draws"] == 0, "inductor's own"
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "dynamo compiled the model's graphs"
    assert math.isfinite(compiled["train_loss"])
    assert compiled["final_validation_loss"] == pytest.approx(eager["final_validation_loss"], rel=EAGER_TOLERANCE)


def test_the_compile_setting_changes_no_fingerprint_or_code_version(make_recipe):
    settings = [
        make_recipe(name, training={"compile": value}) for name, value in (("a", "auto"), ("b", True), ("c", False))
    ]
    upstream = [ArtifactRef("splits", "abc")]
    for stage in ("finetuned_model", "evaluation_report"):
        assert len({CHAIN[stage].fingerprint(recipe, upstream) for recipe in settings}) == 1
        assert len({CHAIN[stage].version(recipe) for recipe in settings}) == 1
