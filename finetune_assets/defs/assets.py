"""The asset factory: one recipe in, one asset group out, one asset per row of the chain's table.

Every asset does the same thing: apply the run's overrides to the recipe and hand the stage to
the runner (:mod:`finetune_assets.pipeline.runner`), which reuses or computes its artifact. The
fingerprint becomes the asset's Dagster data version and the stage's code plus recipe sections its
code version, so the UI marks exactly the stale assets after a recipe or data change.
"""

from dagster import AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, DataVersion, Output, asset

from finetune_assets.defs.metadata import column_schema, to_dagster
from finetune_assets.defs.resources import ArtifactStore, RunSettings
from finetune_assets.pipeline.chain import STAGES, Stage
from finetune_assets.pipeline.runner import run_stage
from finetune_assets.recipes import Recipe


def build_assets(recipe: Recipe) -> list[AssetsDefinition]:
    return [stage_asset(recipe, stage) for stage in STAGES]


def stage_asset(recipe: Recipe, stage: Stage) -> AssetsDefinition:
    @asset(
        key=AssetKey([recipe.name, stage.name]),
        group_name=recipe.name,
        ins={f"up_{i}": AssetIn(key=AssetKey([recipe.name, up])) for i, up in enumerate(stage.upstream)},
        description=f"{stage.description}\n\nRecipe: {recipe.source_file.name}. {recipe.description}".strip(),
        code_version=stage.version(recipe),
        io_manager_key="artifact_refs",
        kinds=set(stage.kinds),
        tags={"task": recipe.task, "method": recipe.method},
    )
    def _asset(context: AssetExecutionContext, artifacts: ArtifactStore, run_settings: RunSettings, **refs):
        active = run_settings.apply(recipe)
        ref, metadata = run_stage(stage, active, artifacts.base, context.log,
                                  [refs[f"up_{i}"] for i in range(len(stage.upstream))],
                                  run_settings.forced(recipe))
        if stage.row_schema:
            metadata = {**metadata, **column_schema(stage.row_schema(active))}
        return Output(ref, data_version=DataVersion(ref.fingerprint),
                      metadata={**to_dagster(metadata), "fingerprint": ref.fingerprint})

    return _asset
