"""The Definitions for a set of recipe folders: per recipe an asset group with its checks, a job, an
optional schedule, (for local data) a new-data sensor and (with ``automation:``) the sensor that
evaluates its automation conditions; plus the storage resources.

A recipe file that does not load never takes the others down: it becomes one asset in the group
``broken_recipes`` whose description is the error (file and key), so ``dagster dev`` serves every
valid group and shows a person what to fix. Under ``dagster definitions validate`` and
``dg check defs`` (which set ``DAGSTER_IS_DEFS_VALIDATION_CLI``) the same errors fail the command,
so CI catches them.

One recipe's part (:func:`recipe_definitions`) and the part every recipe shares
(:func:`shared_definitions`: resources and executor) are separate, so the Dagster component
(:mod:`finetune_assets.defs.fine_tune`) builds a recipe exactly as this module does.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from dagster import AssetKey, AssetsDefinition, Definitions, asset, get_dagster_logger

from finetune_assets.defs import automation
from finetune_assets.defs.assets import build_assets
from finetune_assets.defs.checks import build_checks
from finetune_assets.defs.executor import executor_that_frees_dead_runs, sleep_while_waiting_for_a_pool
from finetune_assets.defs.publishing import rollback_job
from finetune_assets.defs.resources import ArtifactRefIOManager, ArtifactStore, MlflowSettings, RunSettings
from finetune_assets.defs.slot_claims import claim_each_slot_once
from finetune_assets.defs.training import LocalTraining, TrainingHost
from finetune_assets.errors import RecipeError
from finetune_assets.publishing.step import publishes
from finetune_assets.recipes import Recipe, scan

BROKEN_GROUP = "broken_recipes"


def build_definitions(
    recipe_dirs: list[str | Path] | None = None,
    artifacts_root: str = "",
    strict: bool | None = None,
    training: TrainingHost | None = None,
) -> Definitions:
    """Definitions for every recipe in ``recipe_dirs`` (default: the folders
    :func:`finetune_assets.recipes.recipe_folders` names); adding a recipe file adds a group.
    ``training`` says where training processes run (default: :class:`LocalTraining`, this machine).

    ``strict`` raises on broken recipe files instead of showing them as ``broken_recipes``
    assets; by default it is on only under Dagster's validation commands.
    """
    found = scan(*(recipe_dirs or ()))
    built, broken = [], list(found.broken)
    for recipe in found.recipes:
        try:  # a bad cron string, say: the recipe is broken, the others stay
            built.append(recipe_definitions(recipe))
        except RecipeError as error:
            broken.append((recipe.source_file, error))
    if strict is None:
        strict = os.environ.get("DAGSTER_IS_DEFS_VALIDATION_CLI") == "1"
    if broken and strict:
        raise RecipeError("\n".join(str(error) for _, error in broken))
    for _, error in broken:
        get_dagster_logger().warning(f"recipe skipped: {error}")
    return Definitions.merge(
        *built,
        Definitions(assets=[_broken_recipe_asset(path, error) for path, error in broken]),
        shared_definitions(artifacts_root, training),
    )


def shared_definitions(artifacts_root: str = "", training: TrainingHost | None = None) -> Definitions:
    """The resources every recipe's assets use, and the executor. With the defaults it is one object
    per process: Dagster merges resources by identity, so recipes built apart (components in a
    ``defs/`` folder, :func:`build_definitions`) share one code location only if they share these."""
    if not artifacts_root and training is None:
        return _default_shared()
    return _shared(artifacts_root, training)


@functools.cache
def _default_shared() -> Definitions:
    return _shared("", None)


def _shared(artifacts_root: str, training: TrainingHost | None) -> Definitions:
    sleep_while_waiting_for_a_pool()
    claim_each_slot_once()
    return Definitions(
        resources={
            "artifacts": ArtifactStore(root=artifacts_root),
            "artifact_refs": ArtifactRefIOManager(root=artifacts_root),
            "run_settings": RunSettings(),
            "training": training or LocalTraining(),
            "mlflow": MlflowSettings(),
        },
        # One heavy process per run: stages run one after another and share the loaded libraries;
        # first it frees the pool slots of runs whose process died (defs/executor.py).
        executor=executor_that_frees_dead_runs,
    )


def recipe_definitions(recipe: Recipe) -> Definitions:
    """One recipe's asset group, checks, job, its optional schedule and sensors, and (when it publishes
    its champion) its rollback job."""
    job = automation.recipe_job(recipe)
    return Definitions(
        assets=build_assets(recipe),
        asset_checks=build_checks(recipe),
        jobs=[job, *([rollback_job(recipe)] if publishes(recipe) else [])],
        schedules=[s for s in (automation.recipe_schedule(recipe, job),) if s is not None],
        sensors=[
            s for s in (automation.new_data_sensor(recipe, job), automation.automation_sensor(recipe)) if s is not None
        ],
    )


def _broken_recipe_asset(path: Path, error: RecipeError) -> AssetsDefinition:
    """An asset that stands for a recipe file that did not load: its description is the error,
    and materializing it raises the error again."""
    name = re.sub(r"\W", "_", path.stem) or "recipe"

    @asset(
        key=AssetKey([BROKEN_GROUP, name]),
        group_name=BROKEN_GROUP,
        kinds={"yaml"},
        description=f"This recipe file did not load, so it has no assets. Fix it and reload the code "
        f"location:\n\n```\n{error}\n```",
        metadata={"recipe_file": str(path), "error": str(error)},
    )
    def _broken() -> None:
        raise RecipeError(str(error))

    return _broken
