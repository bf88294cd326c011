"""Running one stage of the chain for one recipe: reuse its artifact or make it, atomically.

The same steps for every stage, with no knowledge of which one it is: read what must be read
before the fingerprint is known, compute the fingerprint, reuse the folder of that fingerprint if
it is complete (``cache_hit: true``), else run the stage into a staging folder and rename it into
place with its record; then the stage's ``finish`` step (the promotion gate), cached or not.
Plain Python: Dagster calls it from the asset factory, and a script or benchmark can call it too.
"""

from __future__ import annotations

import time
from pathlib import Path

from finetune_assets.pipeline import caching
from finetune_assets.pipeline.artifacts import ArtifactRef, artifact_folder, atomic_dir
from finetune_assets.pipeline.chain import Stage
from finetune_assets.pipeline.stages import StageWork
from finetune_assets.recipes import Recipe


def run_stage(stage: Stage, recipe: Recipe, root: Path, log, upstream: list[ArtifactRef],
              force: bool = False) -> tuple[ArtifactRef, dict]:
    """Reuse or compute ``stage``'s artifact under ``root``; return its ref and metadata."""
    inputs = stage.read_inputs(recipe, log) if stage.read_inputs else None
    fp = stage.fingerprint(recipe, upstream, *([inputs.digest] if inputs else []))
    folder = artifact_folder(root, recipe.name, stage.name, fp)
    cached = None if force else caching.load(folder)
    if cached:
        log.info(f"{stage.name}: cache hit, reusing {folder}")
        ref, metadata = cached
        metadata = {**metadata, "cache_hit": True, "reused": str(folder)}
    else:
        started = time.monotonic()
        with atomic_dir(folder) as staging:
            info, metadata = stage.run(StageWork(recipe, log, staging, folder, inputs), *upstream)
            ref = ArtifactRef(str(folder / stage.artifact) if stage.artifact else str(folder), fp, info,
                              caching.ancestry(**dict(zip(stage.upstream, upstream))))
            metadata = {**metadata, "stage_seconds": round(time.monotonic() - started, 2)}
            caching.save(staging, ref, metadata)
        metadata = {**metadata, "cache_hit": False}
    if stage.finish:
        ref, decision = stage.finish(recipe, root, log, ref)
        metadata = {**metadata, **decision}
    return ref, metadata
