"""The asset factory: one recipe in, one asset group of six assets out.

Each asset runs the same steps: apply the run's overrides to the recipe, compute the stage's
fingerprint, reuse the artifact if that fingerprint is already on disk (``cache_hit: true``),
else import the heavy stage code, run it into a staging folder and rename that into place. The
fingerprint is also the asset's Dagster data version, and the stage's code plus recipe sections
its code version, so the UI marks exactly the stale assets after a recipe or data change.
"""

import importlib
import time

from dagster import (AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, DataVersion, Output,
                     asset)

from finetune_assets import caching, promotion, sources
from finetune_assets.artifacts import ArtifactRef, ArtifactStore, atomic_dir, fingerprint
from finetune_assets.recipe import Recipe
from finetune_assets.run_settings import RunSettings

# stage name -> (upstream stage names, file or folder the ref points at, one-line description)
CHAIN = {
    "raw_dataset": ((), "rows.parquet", "The data exactly as read from the recipe's source (parquet)."),
    "clean_dataset": (("raw_dataset",), "rows.parquet", "Cleaned, pandera-validated rows in the task's columns."),
    "tokenized_splits": (("clean_dataset",), "", "Train/validation/test splits, tokenized (datasets on disk)."),
    "finetuned_model": (("tokenized_splits",), "", "The fine-tuned checkpoint (full weights or LoRA adapter)."),
    "evaluation_report": (("tokenized_splits", "finetuned_model"), "report.json",
                          "Test metrics of the tuned and the base model."),
    "exported_model": (("finetuned_model", "evaluation_report"), "",
                       "The champion export: a folder transformers.pipeline loads."),
}


def build_assets(recipe: Recipe) -> list[AssetsDefinition]:
    return [_stage_asset(recipe, name) for name in CHAIN]


def run_stage(name: str, recipe: Recipe, store: ArtifactStore, log, upstream: list[ArtifactRef],
              force: bool = False) -> tuple[ArtifactRef, dict]:
    """Reuse or compute one stage's artifact; return its ref and metadata."""
    upstream_names, ref_file, _ = CHAIN[name]
    extra: list = []
    if name == "raw_dataset":
        if recipe.method == "qlora":  # fail before any data is read when no GPU can train it
            importlib.import_module("finetune_assets.methods").preflight(recipe, log)
        frame, source = sources.read_dataset(recipe)
        content_hash = fingerprint(list(map(str, frame.columns)), _row_hashes(frame))
        extra = [frame, source, content_hash]
        fp = caching.stage_fingerprint(name, recipe, [], content_hash)
    else:
        fp = caching.stage_fingerprint(name, recipe, upstream)
    folder = store.folder(recipe.name, name, fp)
    cached = None if force else caching.load(folder)
    if cached:
        log.info(f"{name}: cache hit, reusing {folder}")
        ref, metadata = cached
        return ref, {**metadata, "cache_hit": True, "reused": str(folder)}
    stage = getattr(importlib.import_module("finetune_assets.stages"), name)
    started = time.monotonic()
    with atomic_dir(folder) as staging:
        info, metadata = stage(recipe, log, staging, folder, *upstream, *extra)
        ref = ArtifactRef(str(folder / ref_file) if ref_file else str(folder), fp, info,
                          caching.ancestry(**dict(zip(upstream_names, upstream))))
        metadata = {**metadata, "stage_seconds": round(time.monotonic() - started, 2)}
        caching.save(staging, ref, metadata)
    return ref, {**metadata, "cache_hit": False}


def _row_hashes(frame) -> int:
    import pandas as pd

    return int(pd.util.hash_pandas_object(frame.astype(str), index=False).sum())


def _gate(recipe: Recipe, store: ArtifactStore, log, ref: ArtifactRef) -> tuple[ArtifactRef, dict]:
    from finetune_assets.tasks import get_task

    task = get_task(recipe.task)
    spec = recipe.promotion
    rule = promotion.Rule(
        metric=spec.metric or task.primary_metric,
        higher_is_better=task.primary_metric_higher_is_better if spec.higher_is_better is None
        else spec.higher_is_better,
        min_improvement=spec.min_improvement)
    return promotion.decide(ref, store.base / recipe.name / "exported_model", rule, log)


def _stage_asset(recipe: Recipe, name: str) -> AssetsDefinition:
    upstream, _, doc = CHAIN[name]

    @asset(
        key=AssetKey([recipe.name, name]),
        group_name=recipe.name,
        ins={f"up_{i}": AssetIn(key=AssetKey([recipe.name, up])) for i, up in enumerate(upstream)},
        description=f"{doc}\n\nRecipe: {recipe.source_file.name}. {recipe.description}".strip(),
        code_version=caching.code_version(name, recipe),
        io_manager_key="artifact_refs",
        kinds={"python", "huggingface"} if name in ("finetuned_model", "exported_model") else {"python"},
        tags={"task": recipe.task, "method": recipe.method},
    )
    def _asset(context: AssetExecutionContext, artifacts: ArtifactStore, run_settings: RunSettings, **refs):
        active = run_settings.apply(recipe)
        ref, metadata = run_stage(name, active, artifacts, context.log,
                                  [refs[f"up_{i}"] for i in range(len(upstream))], run_settings.forced(recipe))
        if name == "exported_model":
            ref, decision = _gate(active, artifacts, context.log, ref)
            metadata = {**metadata, **decision}
        return Output(ref, data_version=DataVersion(ref.fingerprint),
                      metadata={**metadata, "fingerprint": ref.fingerprint})

    return _asset
