"""The current champion scored on a challenger's test rows, so the gate compares like with like.

A model's figures depend on the rows it is scored on: 10 easy rows can give f1 1.0 where 40 gave
0.7. So ``evaluation_report`` (its ``finish`` step, run cached or not, since the champion changes
independently of the report) scores the champion export on exactly the test rows the tuned and
base models were scored on, with the same settings. The result is cached by the pair
(champion fingerprint, :func:`rows_key`) under ``<artifacts root>/<recipe>/champion_scores/``;
a champion that was itself evaluated on these rows reuses its own figures.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune_assets.pipeline.artifacts import ArtifactRef, fingerprint
from finetune_assets.pipeline.atomic import atomic_dir
from finetune_assets.pipeline.facts import RunFacts
from finetune_assets.pipeline.stage_names import EVALUATION_REPORT, TOKENIZED_SPLITS
from finetune_assets.promotion import champion as champion_store
from finetune_assets.recipes import Recipe
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import FilePath, Markdown
from finetune_assets.tasks import get_task

SCORES = "scores.json"
CODE_VERSION = "2"  # bump when the scoring of an export changes what it measures
# What picks the test rows and how they are scored, besides the splits themselves.
SETTINGS = (
    "training.max_eval_samples",
    "training.seed",
    "training.max_length",
    "training.max_target_length",
    "training.input_prefix",
    "training.eval_batch_size",
    "generation",
    "evaluation",
)


def rows_key(recipe: Recipe, splits: ArtifactRef) -> str:
    """Names the scored test rows and settings (the family's own among them, and the source of the
    user's code that scores them), the precision this machine scores in included: two evaluations
    with equal keys saw the same rows and computed alike."""
    task = get_task(recipe)
    settings = recipe.section(*SETTINGS, *task.evaluation_reads())
    scorers = task.training_code()  # the user's reward functions score the test rows as well
    extra = (scorers,) if scorers else ()  # other families' keys stay as they were
    return fingerprint(splits.fingerprint, settings, CODE_VERSION, task.precision.scoring_key(), *extra)


def tuned_only(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("baseline_")}


def scores_on_rows(recipe: Recipe, root: Path, champion: ArtifactRef, splits: ArtifactRef, log) -> dict:
    """The champion's metrics on the test rows of ``splits``, computed once per pair."""
    key = rows_key(recipe, splits)
    if champion.info.get("rows_key") == key:  # the champion was evaluated on these very rows
        return tuned_only(champion.info["metrics"])
    folder = root / recipe.name / "champion_scores" / fingerprint(champion.fingerprint, key)
    if (folder / SCORES).exists():
        log.info(f"champion {champion.fingerprint}: reusing its scores on these test rows ({folder})")
        return json.loads((folder / SCORES).read_text())["metrics"]
    from finetune_assets.inference.evaluation import score_export

    log.info(f"scoring the champion {champion.path} on the challenger's test rows")
    with atomic_dir(folder) as staging:
        evaluation, rows = score_export(
            get_task(recipe), Path(splits.path), Path(champion.path), staging / "scratch", log
        )
        record = {
            "champion": champion.fingerprint,
            "champion_path": champion.path,
            "rows_key": key,
            "test_rows": rows,
            "metrics": evaluation.metrics,
        }
        (staging / SCORES).write_text(json.dumps(record, indent=2, default=float))
    return json.loads((folder / SCORES).read_text())["metrics"]


def for_report(recipe: Recipe, root: Path, log, report: ArtifactRef, facts: RunFacts) -> tuple[ArtifactRef, dict]:
    """``evaluation_report``'s finish step: the champion's figures next to the tuned and base ones."""
    champion = None
    try:
        champion = champion_store.read(champion_store.exports_dir(root, recipe.name), log)
        if champion is None:
            return report, {"champion": "none yet"}
        if champion.lineage.get(EVALUATION_REPORT, {}).get("fingerprint") == report.fingerprint:
            scores = tuned_only(report.info["metrics"])  # the tuned model is the champion
        else:
            scores = scores_on_rows(recipe, root, champion, facts.upstream[TOKENIZED_SPLITS], log)
    except Exception as exc:  # the gate tries again and, failing again, says why it did not promote
        log.warning(f"the champion could not be scored on these test rows: {exc}")
        return report, {
            "champion": champion.path if champion else "unreadable",
            "champion_scoring_error": f"{type(exc).__name__}: {exc}",
        }
    scored = {"fingerprint": champion.fingerprint, "path": champion.path, "metrics": scores}
    return ArtifactRef(report.path, report.fingerprint, {**report.info, "champion": scored}, report.lineage), {
        **{f"champion_{name}": float(value) for name, value in scores.items()},
        "champion_path": FilePath(champion.path),
        "models_side_by_side": Markdown(side_by_side(report.info["metrics"], scores)),
    }


def side_by_side(report_metrics: dict, champion_metrics: dict | None) -> str:
    """One row per metric: the tuned model, the base model and the champion, all on the same rows."""
    rows = []
    for name, value in tuned_only(report_metrics).items():
        row = {
            "metric": name,
            "fine-tuned (challenger)": _shown(value),
            "base model": _shown(report_metrics.get(f"baseline_{name}")),
        }
        if champion_metrics is not None:
            row["current champion"] = _shown(champion_metrics.get(name))
        rows.append(row)
    return markdown_table(rows)


def _shown(value) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"
