"""The Dagster ``Definitions``: one asset group per recipe file, plus the storage resources."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, in_process_executor

from finetune_assets.artifacts import ArtifactRefIOManager, ArtifactStore
from finetune_assets.checks import build_checks
from finetune_assets.factory import build_assets
from finetune_assets.recipe import RECIPES_DIR, load_recipes


def build_definitions(recipes_dir: Path = RECIPES_DIR, artifacts_root: str = "") -> Definitions:
    """Definitions for every recipe in ``recipes_dir``; adding a recipe file adds a group."""
    recipes = load_recipes(recipes_dir)
    return Definitions(
        assets=[a for recipe in recipes for a in build_assets(recipe)],
        asset_checks=[c for recipe in recipes for c in build_checks(recipe)],
        resources={
            "artifacts": ArtifactStore(root=artifacts_root),
            "artifact_refs": ArtifactRefIOManager(root=artifacts_root),
        },
        # One heavy process per run: stages run one after another and share the loaded libraries.
        executor=in_process_executor,
    )
