"""Running one stage of the chain for one recipe: reuse its artifact or make it, atomically.

The same steps for every stage, with no knowledge of which one it is: read what must be read
before the fingerprint is known, compute the fingerprint, reuse the folder of that fingerprint if
it is complete (``cache_hit: true``), else run the stage into a staging folder (library progress
bars off, see ``quiet.py``) and rename it into place with its record; then judge the stage's own
checks on that artifact (the quality gates, with the recipe's current thresholds) and run its
``finish`` step (the champion's scores, the promotion gate), cached or not, with the run's
:class:`~finetune_assets.pipeline.facts.RunFacts` and the checks that failed. When the finish step
hands on another artifact than the one made (the gate kept its champion), the metadata describes
that one and this run's figures go under ``challenger_*``.
Two runs making the same fingerprint at once both finish; the folder put in place first is the one
both report. A training stage also gets a checkpoint folder of its fingerprint that outlives a
failed attempt (the next attempt resumes from it) and is deleted once the artifact is complete, and
``start_process``, which starts its process (Dagster Pipes in a run, a plain subprocess by default).
Plain Python: Dagster calls it from the asset factory, and a script or benchmark can call it too.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import NamedTuple

from finetune_assets.checks.declaration import JudgedBy, Judgement
from finetune_assets.checks.registry import checks_for
from finetune_assets.pipeline import caching
from finetune_assets.pipeline.artifacts import ArtifactRef, artifact_folder, checkpoint_folder
from finetune_assets.pipeline.atomic import atomic_dir, remove_stale_staging
from finetune_assets.pipeline.chain import Stage
from finetune_assets.pipeline.facts import FailedCheck, RunFacts
from finetune_assets.pipeline.processes import StartProcess, run_process
from finetune_assets.pipeline.quiet import no_progress_bars
from finetune_assets.pipeline.stages import StageWork
from finetune_assets.promotion import base_champion
from finetune_assets.recipes import Recipe


class StageResult(NamedTuple):
    ref: ArtifactRef  # what flows downstream (after a finish step: e.g. the champion)
    metadata: dict
    checks: tuple[Judgement, ...]  # the checks the stage judges itself, on the artifact it made or reused


def run_stage(
    stage: Stage,
    recipe: Recipe,
    root: Path,
    log,
    upstream: list[ArtifactRef],
    force: bool = False,
    facts: RunFacts | None = None,
    start_process: StartProcess = run_process,
) -> StageResult:
    """Reuse or compute ``stage``'s artifact under ``root``; return its ref, metadata and checks. A
    ``base_model: recipe:<name>`` is pinned first (:mod:`finetune_assets.promotion.base_champion`)."""
    recipe = base_champion.pin(recipe, root, upstream, stage.uses_base(recipe))
    inputs = stage.read_inputs(recipe, log, root, upstream) if stage.read_inputs else None
    fp = stage.fingerprint(recipe, upstream, *([inputs.digest] if inputs else []))
    folder = artifact_folder(root, recipe.name, stage.name, fp)
    for stale in remove_stale_staging(folder.parent):
        log.info(f"{stage.name}: removed {stale}, left behind by a run that did not finish")
    checkpoints = checkpoint_folder(root, recipe.name, fp) if stage.trains else None
    if force and checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)  # force recomputes from scratch, partial work too
    cached = None if force else caching.load(folder)
    if cached:
        log.info(f"{stage.name}: cache hit, reusing {folder}")
        ref, metadata = cached
        metadata = {**metadata, "cache_hit": True, "reused": str(folder)}
    else:
        started = time.monotonic()
        # Replace only on purpose (force) or when what is there is not a complete artifact.
        with atomic_dir(folder, replace=force or folder.exists()) as staging:
            work = StageWork(recipe, log, staging, folder, inputs, fp, checkpoints, start_process)
            no_progress_bars()
            info, metadata = stage.run(work, *upstream)
            if stage.uses_base(recipe):
                info, metadata = base_champion.record(recipe, info, metadata)
            ref = ArtifactRef(
                str(folder / stage.artifact) if stage.artifact else str(folder),
                fp,
                info,
                caching.ancestry(**dict(zip(stage.upstream, upstream))),
            )
            caching.save(staging, ref, {**metadata, "stage_seconds": round(time.monotonic() - started, 2)})
        ref, metadata = caching.load(folder)  # ours, or the same fingerprint another run put there first
        metadata = {**metadata, "cache_hit": False}
    if checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)  # the artifact is complete: nothing left to resume
    checks = judge_checks(stage, recipe, ref, log)
    if stage.finish:
        own = tuple(
            FailedCheck(stage.name, judged.check.name, judged.severity, judged.outcome.description)
            for judged in checks
            if not judged.passed
        )
        facts = dataclasses.replace(facts or RunFacts(), upstream=dict(zip(stage.upstream, upstream)), own_failures=own)
        made = ref
        ref, decision = stage.finish(recipe, root, log, ref, facts)
        if ref.fingerprint != made.fingerprint:
            metadata = handed_on(ref, metadata)
        metadata = {**metadata, **decision}
    return StageResult(ref, metadata, checks)


def judge_checks(stage: Stage, recipe: Recipe, ref: ArtifactRef, log) -> tuple[Judgement, ...]:
    """Each check the stage judges itself (:data:`~finetune_assets.checks.declaration.JudgedBy.STAGE`)
    on ``ref``, under the recipe's current thresholds and severity; failures are logged."""
    return tuple(check.judged(recipe, ref, log) for check in checks_for(recipe, stage.name, JudgedBy.STAGE))


RUN_KEYS = ("cache_hit", "reused")  # what this run did, whichever artifact it hands on


def handed_on(kept: ArtifactRef, made_metadata: dict) -> dict:
    """The finish step handed on another artifact than the one this run made (the promotion gate kept
    its champion): the plain keys describe the artifact handed on, as recorded when it was made, and
    this run's own figures move under ``challenger_*``, so a page never mixes the two."""
    recorded = caching.load(Path(kept.path) if Path(kept.path).is_dir() else Path(kept.path).parent)
    return {
        **(recorded[1] if recorded else {}),
        **{(key if key in RUN_KEYS else f"challenger_{key}"): value for key, value in made_metadata.items()},
    }
