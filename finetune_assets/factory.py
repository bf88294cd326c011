"""The asset factory: one recipe in, one asset group of six assets out.

The wiring is the same for every recipe; the work is in :mod:`finetune_assets.stages`. Each
asset's ``code_version`` is its stage's version, so the UI can tell which assets are stale.
"""


from dagster import AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, asset

from finetune_assets import stages
from finetune_assets.artifacts import ArtifactStore
from finetune_assets.recipe import Recipe

# stage name -> (upstream stage names, one-line description)
CHAIN = {
    "raw_dataset": ((), "The data exactly as read from the recipe's source (parquet)."),
    "clean_dataset": (("raw_dataset",), "Cleaned, pandera-validated rows in the task's columns."),
    "tokenized_splits": (("clean_dataset",), "Train/validation/test splits, tokenized (datasets on disk)."),
    "finetuned_model": (("tokenized_splits",), "The fine-tuned checkpoint (full weights or LoRA adapter)."),
    "evaluation_report": (("tokenized_splits", "finetuned_model"), "Test metrics of tuned and base model."),
    "exported_model": (("finetuned_model", "evaluation_report"), "A folder transformers.pipeline loads."),
}


def build_assets(recipe: Recipe) -> list[AssetsDefinition]:
    return [_stage_asset(recipe, name, upstream, doc) for name, (upstream, doc) in CHAIN.items()]


def _stage_asset(recipe: Recipe, name: str, upstream: tuple[str, ...], doc: str) -> AssetsDefinition:
    stage = getattr(stages, name)

    @asset(
        key=AssetKey([recipe.name, name]),
        group_name=recipe.name,
        ins={f"up_{i}": AssetIn(key=AssetKey([recipe.name, up])) for i, up in enumerate(upstream)},
        description=f"{doc}\n\nRecipe: {recipe.source_file.name}. {recipe.description}".strip(),
        code_version=stages.CODE_VERSIONS[name],
        io_manager_key="artifact_refs",
        kinds={"python", "huggingface"} if name in ("finetuned_model", "exported_model") else {"python"},
        tags={"task": recipe.task, "method": recipe.method},
    )
    def _asset(context: AssetExecutionContext, artifacts: ArtifactStore, **refs):
        ref, metadata = stage(recipe, artifacts, context.log, *(refs[f"up_{i}"] for i in range(len(upstream))))
        context.add_output_metadata({**metadata, "fingerprint": ref.fingerprint})
        return ref

    return _asset
