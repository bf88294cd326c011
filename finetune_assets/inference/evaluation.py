"""Scoring models on the held-out test rows: the fine-tuned model, its untuned base, and any export.

The baseline is the base model loaded exactly as training started from it (same seed, so the
same freshly initialised head): the gap between the two is what fine-tuning bought. The current
champion (an export) is scored by :func:`score_export` on the same rows, so the promotion gate
compares figures measured alike. Every model is scored under ``torch.inference_mode`` in the
precision training used, its weights cast to bf16 where this machine multiplies bf16 natively (see
:meth:`finetune_assets.models.precision.Precision.for_inference`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from datasets import Dataset, DatasetDict, load_from_disk
from transformers import set_seed

from finetune_assets.models import methods
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.recipes import Recipe
from finetune_assets.tasks.base import Evaluation, TaskFamily
from finetune_assets.training.trainer import take


def scored_rows(recipe: Recipe, splits_dir: Path) -> Dataset:
    """The test rows every model is scored on: the split, or the recipe's seeded sample of it."""
    spec = recipe.training
    return take(load_from_disk(str(splits_dir))["test"], spec.max_eval_samples, spec.seed)


def evaluate_both(
    task: TaskFamily, splits_dir: Path, checkpoint: Path, out_dir: Path, log
) -> tuple[Evaluation, Evaluation, dict[str, Path]]:
    """Evaluate base and tuned models in the resolved precision; write ``report.json`` and plots
    into ``out_dir``."""
    numerics = task.precision
    test = scored_rows(task.recipe, splits_dir)
    tokenizer = load_tokenizer(str(checkpoint), task.recipe)
    log.info(f"evaluating the base model on {len(test)} test rows, {numerics}")
    set_seed(task.recipe.training.seed)
    base_model = numerics.for_inference(task.load_model(task.base_location))
    with numerics.inference():
        baseline = task.evaluate(base_model, tokenizer, test, out_dir / "scratch")
    log.info(f"evaluating the fine-tuned model on {len(test)} test rows")
    tuned_model = numerics.for_inference(methods.load_trained(checkpoint, task))
    with numerics.inference():
        tuned = task.evaluate(tuned_model, tokenizer, test, out_dir / "scratch")
    shutil.rmtree(out_dir / "scratch", ignore_errors=True)
    report = {
        "test_rows": len(test),
        **numerics.inference_metadata(),
        "tuned": tuned.__dict__,
        "baseline": baseline.__dict__,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return tuned, baseline, task.report_plots(tuned, baseline, out_dir)


def score_export(task: TaskFamily, splits_dir: Path, export: Path, workdir: Path, log) -> tuple[Evaluation, int]:
    """Score the exported model in ``export`` on the recipe's test rows in the resolved precision,
    as :func:`evaluate_both` scores the challenger; return it and the row count.

    The rows are tokenized again with the export's own tokenizer (the champion may come from
    another base model), from the task's clean columns, under the challenger's recipe settings.
    """
    test = scored_rows(task.recipe, splits_dir)
    clean_columns = [c for c in task.schema().to_schema().columns if c in test.column_names]
    tokenizer = load_tokenizer(str(export), task.recipe)
    rows = task.tokenize(DatasetDict({"test": test.select_columns(clean_columns)}), tokenizer)["test"]
    log.info(f"evaluating the champion export on the same {len(rows)} test rows, {task.precision}")
    model = task.precision.for_inference(task.load_model(str(export)))
    with task.precision.inference():
        evaluation = task.evaluate(model, tokenizer, rows, workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    return evaluation, len(rows)
