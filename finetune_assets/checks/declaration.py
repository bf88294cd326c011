"""What a check is: one declaration for data checks and model gates, and the typed outcome of judging it.

Severity says what a failure does. An ERROR check that fails stops what follows (Dagster:
``blocking``) and the promotion; a failed WARN check is shown, and blocks the promotion unless
``promotion.allow_warnings``. In a sweep a variant's in-stage ERROR check does not block its
partition's run (the sweep report never chooses a variant that fails it), so one bad variant cannot
stop the backfill that compares them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.recipes import Recipe
from finetune_assets.tasks import get_task


class Severity(StrEnum):
    ERROR = "ERROR"
    WARN = "WARN"


class JudgedBy(StrEnum):
    """Who judges a check. ``DAGSTER``: an asset check of its own, run after the asset materialized,
    reading the artifact (the data checks). ``STAGE``: the runner, on the artifact the stage made or
    reused and before its finish step (the promotion gate) decides; Dagster shows it as the asset's
    own check, reported by the asset (the quality gates, and the export's checks, whose outcome the
    export recorded in its reference because judging them needs the model loaded)."""

    DAGSTER = "dagster"
    STAGE = "stage"


@dataclass(frozen=True)
class Outcome:
    """A judged check: ``passed``, a ``description`` that says what was compared (and on failure what
    to do), and the ``figures`` behind it, at full precision (Dagster's metadata rounds them for
    display, ``report.values.rounded``)."""

    passed: bool
    description: str
    figures: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "passed", bool(self.passed))  # a numpy comparison's bool_ is not JSON

    @classmethod
    def recorded(cls, outcome: dict) -> Outcome:
        """An outcome a stage recorded as plain data in its artifact's reference (``info["checks"]``)."""
        return cls(bool(outcome["passed"]), outcome["description"], dict(outcome.get("figures", {})))


def always(severity: Severity) -> Callable[[Recipe], Severity]:
    """A severity that does not depend on the recipe."""
    return lambda recipe: severity


ALWAYS_ERROR = always(Severity.ERROR)


def everywhere(recipe: Recipe) -> bool:
    return True


def has_labels(recipe: Recipe) -> bool:
    """Whether the recipe's rows carry a class label (``TaskFamily.label_names``): the label checks' condition."""
    return bool(get_task(recipe).label_names())


@dataclass(frozen=True)
class Check:
    """One check, data check or model gate: declared once, converted to Dagster in one place
    (:mod:`finetune_assets.defs.checks`) and judged by the runner through :meth:`judged`."""

    name: str
    asset: str  # the stage whose artifact it judges (a name of pipeline.stage_names)
    description: str  # for a reviewer: what it compares, what failing means, what to do
    judge: Callable[[Recipe, ArtifactRef], Outcome]
    severity: Callable[[Recipe], Severity] = ALWAYS_ERROR
    applies: Callable[[Recipe], bool] = everywhere  # e.g. label checks only where the task's rows have labels
    judged_by: JudgedBy = JudgedBy.DAGSTER

    def blocking(self, recipe: Recipe, partitioned: bool = False) -> bool:
        """Whether a failure stops what follows: ERROR checks, except a sweep variant's in-stage ones."""
        return self.severity(recipe) is Severity.ERROR and not (partitioned and self.judged_by is JudgedBy.STAGE)

    def describe(self, recipe: Recipe, partitioned: bool = False) -> str:
        """The description with the recipe's severity, as Dagster shows it."""
        severity = self.severity(recipe)
        unblocked = severity is Severity.ERROR and not self.blocking(recipe, partitioned)
        return f"{self.description} Severity {severity.value}." + (
            " Not blocking in a sweep: a variant that fails it is never chosen." if unblocked else ""
        )

    def judged(self, recipe: Recipe, ref: ArtifactRef, log) -> Judgement:
        """The check judged on ``ref`` under ``recipe``'s thresholds and severity; a failure is logged."""
        judgement = Judgement(self, self.severity(recipe), self.judge(recipe, ref))
        if not judgement.outcome.passed:
            (log.error if judgement.severity is Severity.ERROR else log.warning)(
                f"check {self.asset}/{self.name} ({judgement.severity.value}) failed: {judgement.outcome.description}"
            )
        return judgement


@dataclass(frozen=True)
class Judgement:
    """A check's outcome on one artifact, with the severity its recipe gave it."""

    check: Check
    severity: Severity
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return self.outcome.passed
