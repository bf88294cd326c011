"""The promotion gate: a new export replaces the champion only if it is fit to and measurably better.

Every export is written to its own fingerprinted folder and stays on disk; the *champion* is the
one users get (:mod:`.champion`: ``champion.json`` and the ``current`` link). A challenger is
**not promoted**, whatever its score, when

- a check on its lineage failed (WARN included, unless ``promotion.allow_warnings``), or has no
  result on the data it was trained from: the data checks, and the quality gates of the model and
  its evaluation (``beats_base_model``, ``no_overfitting``, ...); or the export's own check failed
  (``merge_verified``: the merged model is not the model that was trained; ``export_reloads``: the
  folder loaded through its pipeline does not give the report's predictions);
- its run changed the recipe through run config (``max_train_samples`` and the like) and did not
  say ``promote: true``: a quick smoke run never replaces the production model;
- its test split has fewer than ``promotion.min_test_rows`` rows.

Otherwise it is compared with the champion **on the same rows**: the champion re-scored on the
challenger's test split (:mod:`.champion_scores`), never the champion's own figure from another
split. It must beat it by ``promotion.min_improvement`` on the primary metric (direction from the
task: accuracy up, perplexity down). The decision is taken under the champion lock, so two runs
deciding at once take turns and the second compares with the first's result. Every decision is
appended to ``evaluation_history.jsonl``, shown as a table and a plot; the decision is a typed value
(:mod:`.decision`) whose text the metadata and the history keep. In a sweep the challenger is the
variant the sweep report chose (:mod:`.sweep_report`), and the decision names it.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from finetune_assets.checks.declaration import Severity
from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.facts import RunFacts
from finetune_assets.pipeline.stage_names import EVALUATION_REPORT, TOKENIZED_SPLITS
from finetune_assets.promotion import champion as champion_store
from finetune_assets.promotion import champion_scores
from finetune_assets.promotion.decision import Decision, Verdict
from finetune_assets.recipes import Recipe
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import FilePath, Markdown
from finetune_assets.tasks import get_task


@dataclass(frozen=True)
class Rule:
    metric: str
    higher_is_better: bool
    min_improvement: float

    @classmethod
    def of(cls, recipe: Recipe) -> Rule:
        """The recipe's rule: ``promotion.metric`` (default the task's primary metric) in its direction."""
        task, spec = get_task(recipe), recipe.promotion
        return cls(
            metric=spec.metric or task.primary_metric,
            higher_is_better=task.primary_metric_higher_is_better
            if spec.higher_is_better is None
            else spec.higher_is_better,
            min_improvement=spec.min_improvement,
        )

    def figure(self, recipe: Recipe, metrics: dict) -> float:
        """The compared figure among a report's ``metrics``; a metric the report lacks is the recipe's error."""
        if self.metric not in metrics:
            raise RecipeError(
                f"{recipe.source_file.name}: promotion.metric '{self.metric}' is not a figure of the "
                f"evaluation report (it has {sorted(champion_scores.tuned_only(metrics))})"
            )
        return float(metrics[self.metric])

    def best(self, figures: dict[str, float]) -> str | None:
        """The key of the best finite figure (the first of equal ones), or None: how a sweep picks its variant."""
        finite = {key: value for key, value in figures.items() if math.isfinite(value)}
        return (max if self.higher_is_better else min)(finite, key=finite.get) if finite else None

    def beats(self, challenger: float, champion: float) -> bool:
        gain = challenger - champion if self.higher_is_better else champion - challenger
        return gain > 0 and gain >= self.min_improvement  # NaN on either side never beats


@dataclass(frozen=True)
class Challenger:
    """A new export and what the gate knows about it."""

    ref: ArtifactRef
    metrics: dict  # its report's figures on its test rows (tuned, and baseline_*)
    test_rows: int
    blockers: list[str] = field(default_factory=list)  # why it may not replace the champion at all
    overrides: str = ""  # the run-config overrides of its run, as text ("" when none)
    known_champion: dict | None = None  # the champion the report scored on these rows, if any
    variant: str = ""  # the sweep variant it was trained as, chosen by the sweep report ("" without a sweep)


def gate(recipe: Recipe, root: Path, log, export: ArtifactRef, facts: RunFacts) -> tuple[ArtifactRef, dict]:
    """``exported_model``'s finish step: the gate with the recipe's rule and the run's facts."""
    rule = Rule.of(recipe)
    report = facts.upstream[EVALUATION_REPORT]
    metrics = report.info["metrics"]
    rule.figure(recipe, metrics)
    test_rows = report.info.get("test_rows", 0)  # reports made before it was recorded count as none
    challenger = Challenger(
        export,
        metrics,
        test_rows,
        blockers(recipe, test_rows, facts),
        facts.describe_overrides(),
        report.info.get("champion"),
        recipe.variant,
    )
    made_from = export.lineage[TOKENIZED_SPLITS]
    splits = ArtifactRef(made_from["path"], made_from["fingerprint"])
    return decide(
        challenger,
        champion_store.exports_dir(root, recipe.name),
        rule,
        log,
        lambda champion: champion_scores.scores_on_rows(recipe, root, champion, splits, log),
    )


def blockers(recipe: Recipe, test_rows: int, facts: RunFacts) -> list[str]:
    """Every reason this run's export may not become champion, however well it scores: the export's
    own failed checks first (``merge_verified``, ``export_reloads``), then those of its lineage."""
    spec, found = recipe.promotion, []
    for failed in (*facts.own_failures, *(facts.failed_checks or ())):
        if failed.severity == Severity.WARN and spec.allow_warnings:
            continue
        found.append(f"check {failed.describe()}")
    if facts.overrides and not facts.promote_with_overrides:
        found.append(
            f"the run overrides the recipe ({facts.describe_overrides()}); set run_settings "
            "promote: true in the run config to let such a run promote"
        )
    if test_rows < spec.min_test_rows:
        found.append(
            f"the test split has {test_rows} rows, fewer than promotion.min_test_rows "
            f"({spec.min_test_rows}): too few to tell two models apart"
        )
    return found


def decide(
    challenger: Challenger, exports_dir: Path, rule: Rule, log, champion_scores_on_rows: Callable[[ArtifactRef], dict]
) -> tuple[ArtifactRef, dict]:
    """Promote or keep, under the champion lock; return the champion (the challenger when there is
    none yet) and the metadata that explains the decision. ``champion_scores_on_rows(champion)``
    gives the champion's figures on the challenger's test rows."""
    value = float(challenger.metrics[rule.metric])
    with champion_store.locked(exports_dir):
        previous = champion = champion_store.read(exports_dir, log, repair=True)
        decision, champion_figures = _decision(challenger, previous, rule, value, exports_dir, champion_scores_on_rows)
        if decision.promoted:
            champion_store.write(exports_dir, challenger.ref)
            champion = challenger.ref
        entry = (
            None
            if decision.verdict is Verdict.ALREADY_CHAMPION
            else {
                "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "fingerprint": challenger.ref.fingerprint,
                rule.metric: round(value, 6),
                "test_rows": challenger.test_rows,
                f"champion_{rule.metric}": None
                if champion_figures is None
                else round(champion_figures[rule.metric], 6),
                "champion": previous.fingerprint if previous else None,
                "overrides": challenger.overrides,
                "decision": decision.text,
            }
        )
        history = champion_store.history(exports_dir, entry)
    shown = champion_figures or _known_figures(challenger, previous)
    log.info(
        f"promotion gate: {decision.text}; challenger {rule.metric}={value:.4f} on {challenger.test_rows} test "
        f"rows" + (f", champion on the same rows {shown[rule.metric]:.4f}" if shown else "")
    )
    return champion or challenger.ref, {
        "decision": decision.text,
        "promoted": decision.promoted,
        "path": FilePath((champion or challenger.ref).path),
        "champion_path": FilePath(champion.path) if champion else "none yet",
        "challenger_path": FilePath(challenger.ref.path),
        **({"variant": challenger.variant} if challenger.variant else {}),
        "previous_champion_path": FilePath(previous.path) if previous else "none",
        f"challenger_{rule.metric}": value,
        **({f"champion_{rule.metric}": float(shown[rule.metric])} if shown else {}),
        "challenger_test_rows": challenger.test_rows,
        "min_improvement": rule.min_improvement,
        "run_overrides": challenger.overrides or "none",
        "models_side_by_side": Markdown(champion_scores.side_by_side(challenger.metrics, shown)),
        "evaluation_history": Markdown(markdown_table(history[-20:])),
        "evaluation_history_plot": _history_plot(history, rule.metric, exports_dir),
    }


def _decision(
    challenger: Challenger,
    champion: ArtifactRef | None,
    rule: Rule,
    value: float,
    exports_dir: Path,
    score: Callable[[ArtifactRef], dict],
) -> tuple[Decision, dict | None]:
    """The gate's decision, and the champion's figures on the challenger's rows where it was compared."""
    variant = challenger.variant
    unusable = [] if math.isfinite(value) else [f"its {rule.metric} is {value}, which cannot be compared"]
    if champion is not None and champion.fingerprint == challenger.ref.fingerprint:
        return Decision(Verdict.ALREADY_CHAMPION, variant=variant), None
    if challenger.blockers or unusable:
        return Decision(Verdict.NOT_PROMOTED, (*challenger.blockers, *unusable), variant), None
    if champion is None:
        return Decision(Verdict.PROMOTED_FIRST, variant=variant), None
    try:
        figures = _champion_figures(challenger, champion, score)
    except Exception as exc:  # an export the current recipe cannot score (labels changed, ...)
        return Decision(
            Verdict.NOT_PROMOTED,
            (
                f"the champion {champion.path} could not be scored on the challenger's test rows "
                f"({type(exc).__name__}: {exc}); if the recipe changed what the model predicts, retire the champion "
                f"by deleting {exports_dir / champion_store.CHAMPION}",
            ),
            variant,
        ), None
    won = rule.beats(value, float(figures[rule.metric]))
    return Decision(Verdict.PROMOTED if won else Verdict.KEPT, variant=variant), figures


def _champion_figures(challenger: Challenger, champion: ArtifactRef, score: Callable[[ArtifactRef], dict]) -> dict:
    """The champion on the challenger's rows: as the report scored it, unless the champion changed since."""
    return _known_figures(challenger, champion) or score(champion)


def _known_figures(challenger: Challenger, champion: ArtifactRef | None) -> dict | None:
    """What the report measured for ``champion`` on the challenger's rows, if it measured that one."""
    known = challenger.known_champion
    if champion is not None and known and known.get("fingerprint") == champion.fingerprint:
        return known.get("metrics")
    return None


def _history_plot(history: list[dict], metric: str, exports_dir: Path) -> Markdown:
    """The history plot, written under a unique name so concurrent decisions never share a file."""
    from finetune_assets.report import plots  # matplotlib: only when a decision is drawn

    target = exports_dir / "evaluation_history.png"
    temp = exports_dir / f".evaluation_history.{os.getpid()}-{uuid.uuid4().hex[:8]}.png"
    try:
        picture = plots.as_markdown(plots.metric_history(history, metric, temp), "evaluation history")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return picture
