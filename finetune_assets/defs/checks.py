"""The one conversion of the project's checks (:mod:`finetune_assets.checks`) into Dagster's.

A check Dagster judges (the data checks) becomes an ``@asset_check`` of its own that reads the
artifact after the asset materialized; a check its stage judges (the quality gates, the export's
checks) becomes an ``AssetCheckSpec`` of the asset, whose result the asset reports itself. Either
way the description ends with the recipe's severity, only failing ERROR checks block (a sweep
variant's in-stage ones excepted, see :meth:`~finetune_assets.checks.declaration.Check.blocking`), and
an outcome becomes an ``AssetCheckResult`` with its figures as rounded metadata.
"""

from __future__ import annotations

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    asset_check,
)

from finetune_assets.checks.declaration import Check, JudgedBy, Judgement
from finetune_assets.checks.registry import checks_for
from finetune_assets.defs.metadata import to_dagster
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.recipes import Recipe


def build_checks(recipe: Recipe) -> list[AssetChecksDefinition]:
    """The recipe's checks that Dagster runs after their asset materialized."""
    return [_asset_check(recipe, check) for check in checks_for(recipe, judged_by=JudgedBy.DAGSTER)]


def stage_check_specs(recipe: Recipe, stage: str, partitioned: bool = False) -> list[AssetCheckSpec]:
    """The asset's own checks: those ``stage`` judges on its artifact before its finish step."""
    key = AssetKey([recipe.name, stage])
    return [
        AssetCheckSpec(
            check.name,
            asset=key,
            blocking=check.blocking(recipe, partitioned),
            description=check.describe(recipe, partitioned),
        )
        for check in checks_for(recipe, stage, JudgedBy.STAGE)
    ]


def check_result(judgement: Judgement) -> AssetCheckResult:
    outcome = judgement.outcome
    return AssetCheckResult(
        check_name=judgement.check.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity(judgement.severity.value),
        description=outcome.description,
        metadata=to_dagster(outcome.figures),
    )


def _asset_check(recipe: Recipe, check: Check) -> AssetChecksDefinition:
    @asset_check(
        asset=AssetKey([recipe.name, check.asset]),
        name=check.name,
        blocking=check.blocking(recipe),
        description=check.describe(recipe),
    )
    def _run(context, ref: ArtifactRef) -> AssetCheckResult:
        return check_result(check.judged(recipe, ref, context.log))

    return _run
