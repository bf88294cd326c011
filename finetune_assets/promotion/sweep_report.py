"""The sweep report: every variant of a sweep on the same test rows, side by side, and its choice.

Which variants have been evaluated is read from the artifacts themselves: a variant's
``evaluation_report`` is found under the fingerprint its partition has on the current splits (the
variant's recipe, the model trained from those splits), so a variant made from other data or an
earlier version of the recipe is never compared, and a variant not evaluated yet is listed as
such. All of them were scored on the same test rows (a sweep cannot vary what picks them, see
:data:`finetune_assets.recipes.sweep.SHARED`). The best by the recipe's promotion rule (metric and
direction, :class:`~finetune_assets.promotion.gate.Rule`) among those that pass their ERROR
quality gates (``beats_base_model``, ``beats_majority_class``) is the choice: ``exported_model``
exports that variant and its promotion gate compares it with the champion. A variant that fails a
gate is shown, marked, and never chosen; in a sweep those gates do not block its partition's run, so
one bad variant does not stop the others' comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune_assets.checks.declaration import JudgedBy, Severity
from finetune_assets.checks.registry import checks_for
from finetune_assets.errors import SweepError
from finetune_assets.pipeline import caching
from finetune_assets.pipeline.artifacts import ArtifactRef, artifact_folder, fingerprint
from finetune_assets.pipeline.stage_names import EVALUATION_REPORT, FINETUNED_MODEL
from finetune_assets.pipeline.stages import Inputs, Result, StageWork
from finetune_assets.promotion.champion_scores import tuned_only
from finetune_assets.promotion.gate import Rule
from finetune_assets.recipes import Recipe
from finetune_assets.recipes.sweep import variants
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import FilePath, Markdown

PER_VARIANT = (FINETUNED_MODEL, EVALUATION_REPORT)  # what the choice hands on to exported_model


def evaluations(recipe: Recipe, root: Path, splits: ArtifactRef, model_stage, report_stage) -> Inputs:
    """Each variant's evaluation report on ``splits`` (None where there is none yet), found by the
    fingerprints ``model_stage`` and ``report_stage`` give its recipe, and the ERROR quality gates of
    ``report_stage`` each one fails (such a variant is never chosen); the digest says which exist and
    which failed, so a changed threshold is compared again."""
    found: dict[str, ArtifactRef | None] = {}
    failed: dict[str, list[str]] = {}
    for variant in variants(recipe):
        model = ArtifactRef("", model_stage.fingerprint(variant.recipe, [splits]))
        report = report_stage.fingerprint(variant.recipe, [splits, model])
        cached = caching.load(artifact_folder(root, recipe.name, report_stage.name, report))
        found[variant.name] = cached[0] if cached else None
        failed[variant.name] = [
            check.name
            for check in checks_for(variant.recipe, report_stage.name, JudgedBy.STAGE)
            if cached
            and check.severity(variant.recipe) is Severity.ERROR
            and not check.judge(variant.recipe, cached[0]).passed
        ]
    digest = fingerprint(sorted((name, ref.fingerprint if ref else None, failed[name]) for name, ref in found.items()))
    return Inputs(digest, (found, failed))


def compare(work: StageWork, splits: ArtifactRef) -> Result:
    """The comparison table and plot, and the chosen variant with the references exported_model needs."""
    from finetune_assets.report import plots  # matplotlib: only when a sweep is compared

    recipe, (found, failed) = work.recipe, work.inputs.value
    rule = Rule.of(recipe)
    reports, scores, chosen = _choose(recipe, rule, found, failed)
    ranked = sorted(
        reports, key=lambda name: (name != chosen, -scores[name] if rule.higher_is_better else scores[name])
    )
    missing = [name for name, ref in found.items() if ref is None]
    report = reports[chosen]
    figures = {name: _training_figures(ref) for name, ref in reports.items()}
    baseline = {
        name[len("baseline_") :]: value
        for name, value in report.info["metrics"].items()
        if name.startswith("baseline_")
    }
    rows = [
        _row(name, tuned_only(reports[name].info["metrics"]), figures[name], rule, _status(name, chosen, failed))
        for name in ranked
    ]
    rows += [{"variant": name, "status": "not evaluated yet: materialize its partition"} for name in missing]
    rows.append(_row("base model (untuned)", baseline, {}, rule, "reference"))
    (work.staging / "sweep.json").write_text(
        json.dumps({"metric": rule.metric, "chosen": chosen, "rows": rows}, indent=2)
    )
    points = [{"name": name, rule.metric: scores[name], **_cost(figures[name])} for name in found if name in reports]
    picture = plots.sweep_comparison(points, rule.metric, baseline.get(rule.metric), chosen, work.staging / "sweep.png")
    test_rows = report.info.get("test_rows", 0)
    work.log.info(
        f"sweep: {chosen} is the best of {len(reports)} evaluated variants by {rule.metric} "
        f"({scores[chosen]:.4f} on {test_rows} test rows)" + (f"; not evaluated yet: {missing}" if missing else "")
    )
    refs = _chosen_refs(recipe, chosen, report)
    info = dict(chosen=chosen, metric=rule.metric, value=scores[chosen], test_rows=test_rows, evaluated=ranked,
                not_evaluated=missing, refs=refs)  # fmt: skip
    return info, {
        "chosen_variant": chosen,
        f"chosen_{rule.metric}": scores[chosen],
        "variants_evaluated": len(reports),
        "variants_not_evaluated": ", ".join(missing) or "none",
        "test_rows": test_rows,
        "comparison": Markdown(
            f"All variants scored on the same {test_rows} test rows; ranked by {rule.metric} "
            f"({'higher' if rule.higher_is_better else 'lower'} is better).\n\n" + markdown_table(rows)
        ),
        "comparison_plot": plots.as_markdown(picture, "sweep comparison"),
        "path": FilePath(str(work.final / "sweep.json")),
    }


def _cost(figures: dict) -> dict:
    """What a variant's training cost: the time and the peak memory the plot shows beside its score."""
    return {"train_seconds": figures.get("train_seconds"), "peak_mib": _peak(figures)}


def _choose(recipe: Recipe, rule: Rule, found: dict, failed: dict) -> tuple[dict, dict, str]:
    """The evaluated variants' reports, their scores, and the best one whose gates passed."""
    reports = {name: ref for name, ref in found.items() if ref is not None}
    if not reports:
        raise SweepError(
            f"{recipe.name}: no variant of the sweep has been evaluated on the current splits yet; "
            f"materialize the partitions of {recipe.name}/evaluation_report first (all of them: a "
            "backfill), then the sweep report"
        )
    scores = {name: rule.figure(recipe, ref.info["metrics"]) for name, ref in reports.items()}
    chosen = rule.best({name: score for name, score in scores.items() if not failed[name]})
    if chosen is None:
        raise SweepError(
            f"{recipe.name}: no variant passed its quality gates with a finite {rule.metric} "
            f"({scores}; failed: { {name: gates for name, gates in failed.items() if gates} }); see each "
            "variant's evaluation_report checks"
        )
    return reports, scores, chosen


def _status(name: str, chosen: str, failed: dict) -> str:
    if name == chosen:
        return "chosen: goes to the promotion gate"
    return f"failed {', '.join(failed[name])}: never chosen" if failed[name] else "evaluated"


def _chosen_refs(recipe: Recipe, chosen: str, report: ArtifactRef) -> dict:
    """The references exported_model reads for the chosen variant: its model and its report."""
    model = caching.load(Path(report.lineage[FINETUNED_MODEL]["path"]))
    if model is None:
        raise SweepError(
            f"{recipe.name}: the model of variant {chosen} is gone from "
            f"{report.lineage[FINETUNED_MODEL]['path']}; materialize its partition again"
        )
    return {FINETUNED_MODEL: json.loads(model[0].to_json()), EVALUATION_REPORT: json.loads(report.to_json())}


def chosen(sweep: ArtifactRef) -> tuple[str, dict[str, ArtifactRef]]:
    """The variant the sweep report chose and its references, by stage name (:data:`PER_VARIANT`)."""
    return sweep.info["chosen"], {name: ArtifactRef(**sweep.info["refs"][name]) for name in PER_VARIANT}


def _training_figures(report: ArtifactRef) -> dict:
    """What the variant's training process reported (train seconds, peak memory, trainable parameters)."""
    path = Path(report.lineage[FINETUNED_MODEL]["path"]) / "training_figures.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _peak(figures: dict) -> float | None:
    return figures.get("cuda_peak_mib") or figures.get("peak_rss_mib")


def _row(name: str, metrics: dict, figures: dict, rule: Rule, status: str) -> dict:
    """One line of the table: the compared metric first, then the others, then what training cost."""
    ordered = [rule.metric, *(key for key in metrics if key != rule.metric)]
    peak = _peak(figures)
    return {
        "variant": name,
        **{key: _shown(metrics.get(key)) for key in ordered},
        "train seconds": "" if figures.get("train_seconds") is None else f"{figures['train_seconds']:.1f}",
        "peak memory (MiB)": "" if peak is None else f"{peak:,.0f}" + (" GPU" if figures.get("cuda_peak_mib") else ""),
        "trainable parameters": "" if "trainable_parameters" not in figures else f"{figures['trainable_parameters']:,}",
        "status": status,
    }


def _shown(value) -> str:
    return "" if value is None else f"{float(value):.4f}"
