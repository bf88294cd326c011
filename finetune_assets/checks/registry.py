"""Every declared check, data checks and quality gates alike, and which of them apply to a recipe.

The asset factory asks it for the checks Dagster runs and the ones each stage judges itself, the
runner for a stage's own checks, the promotion gate's caller for every check on a challenger's
lineage, and the sweep report for the gates a variant must pass.
"""

from __future__ import annotations

from finetune_assets.checks.data import DATA_CHECKS
from finetune_assets.checks.declaration import Check, JudgedBy
from finetune_assets.checks.quality_gates import GATES
from finetune_assets.recipes import Recipe

CHECKS: tuple[Check, ...] = (*DATA_CHECKS, *GATES)


def checks_for(recipe: Recipe, asset: str | None = None, judged_by: JudgedBy | None = None) -> tuple[Check, ...]:
    """The checks that apply to ``recipe``, optionally only those on ``asset`` or judged by ``judged_by``."""
    return tuple(
        check
        for check in CHECKS
        if (asset is None or check.asset == asset)
        and (judged_by is None or check.judged_by is judged_by)
        and check.applies(recipe)
    )
