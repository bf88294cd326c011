"""Scoring the fine-tuned model and its untuned base on the same held-out test rows.

The baseline is the base model loaded exactly as training started from it (same seed, so the
same freshly initialised head): the gap between the two is what fine-tuning bought.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from datasets import load_from_disk
from transformers import set_seed

from finetune_assets.recipes import Recipe
from finetune_assets.tasks.base import Evaluation, TaskFamily
from finetune_assets.training import methods
from finetune_assets.training.tokenizer import load_tokenizer
from finetune_assets.training.trainer import take


def evaluate_both(recipe: Recipe, task: TaskFamily, splits_dir: Path, checkpoint: Path,
                  base_location: str, out_dir: Path, log) -> tuple[Evaluation, Evaluation, dict[str, Path]]:
    """Evaluate base and tuned models; write ``report.json`` and plots into ``out_dir``."""
    spec = recipe.training
    test = take(load_from_disk(str(splits_dir))["test"], spec.max_eval_samples, spec.seed)
    tokenizer = load_tokenizer(str(checkpoint), recipe)
    log.info(f"evaluating the base model on {len(test)} test rows")
    set_seed(spec.seed)
    baseline = task.evaluate(task.load_model(base_location, recipe), tokenizer, test, recipe, out_dir / "scratch")
    log.info(f"evaluating the fine-tuned model on {len(test)} test rows")
    tuned_model = methods.load_trained(checkpoint, base_location, recipe, task)
    tuned = task.evaluate(tuned_model, tokenizer, test, recipe, out_dir / "scratch")
    shutil.rmtree(out_dir / "scratch", ignore_errors=True)
    report = {"test_rows": len(test), "tuned": tuned.__dict__, "baseline": baseline.__dict__}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return tuned, baseline, task.report_plots(tuned, baseline, recipe, out_dir)
