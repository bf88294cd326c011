"""The Dagster ``Definitions``: per recipe file an asset group with its checks, a job, an
optional schedule and (for local data) a new-data sensor; plus the storage resources."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, in_process_executor

from finetune_assets import automation
from finetune_assets.artifacts import ArtifactRefIOManager, ArtifactStore
from finetune_assets.checks import build_checks
from finetune_assets.factory import build_assets
from finetune_assets.recipe import RECIPES_DIR, load_recipes
from finetune_assets.run_settings import RunSettings


def build_definitions(recipes_dir: Path = RECIPES_DIR, artifacts_root: str = "") -> Definitions:
    """Definitions for every recipe in ``recipes_dir``; adding a recipe file adds a group."""
    recipes = load_recipes(recipes_dir)
    jobs = {recipe.name: automation.recipe_job(recipe) for recipe in recipes}
    schedules = [automation.recipe_schedule(recipe, jobs[recipe.name]) for recipe in recipes]
    sensors = [automation.new_data_sensor(recipe, jobs[recipe.name]) for recipe in recipes]
    return Definitions(
        assets=[a for recipe in recipes for a in build_assets(recipe)],
        asset_checks=[c for recipe in recipes for c in build_checks(recipe)],
        jobs=list(jobs.values()),
        schedules=[s for s in schedules if s is not None],
        sensors=[s for s in sensors if s is not None],
        resources={
            "artifacts": ArtifactStore(root=artifacts_root),
            "artifact_refs": ArtifactRefIOManager(root=artifacts_root),
            "run_settings": RunSettings(),
        },
        # One heavy process per run: stages run one after another and share the loaded libraries.
        executor=in_process_executor,
    )
