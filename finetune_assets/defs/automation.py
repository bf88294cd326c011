"""Retraining that runs itself: a job per recipe, its optional schedule, and a new-data sensor.

Schedules and sensors are created stopped; a person starts them in the UI (Automation tab). Their
runs are ordinary materializations of the recipe's group, so caching skips what did not change.
A recipe with a sweep gets one run per variant (its partition): each trains its variant, then the
sweep report compares every variant evaluated so far and the gate judges the best.
"""


import hashlib
import json
from pathlib import Path

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from finetune_assets.data.sources import FILE_FORMATS, resolve
from finetune_assets.recipes import Recipe
from finetune_assets.recipes.sweep import variants


def recipe_job(recipe: Recipe):
    return define_asset_job(f"{recipe.name}_job", selection=AssetSelection.groups(recipe.name),
                            description=f"Materialize every asset (and check) of recipe {recipe.name}.")


def run_requests(recipe: Recipe, run_key: str | None = None, **tags: str) -> list[RunRequest]:
    """The runs that retrain the recipe: one, or with a sweep one per variant (partition), each with
    its own run key (a schedule tick dedupes its requests by it)."""
    names = [made.name for made in variants(recipe)] or [None]
    return [RunRequest(run_key=":".join(filter(None, (run_key, name))) or None, partition_key=name, tags=tags)
            for name in names]


def recipe_schedule(recipe: Recipe, job) -> ScheduleDefinition | None:
    if recipe.schedule is None:
        return None

    def requests(context):  # a schedule takes its run requests as a generator, not a list
        yield from run_requests(recipe)

    return ScheduleDefinition(name=f"{recipe.name}_schedule", job=job, cron_schedule=recipe.schedule.cron,
                              execution_timezone=recipe.schedule.timezone, execution_fn=requests,
                              default_status=DefaultScheduleStatus.STOPPED,
                              description=f"Retrain {recipe.name} on '{recipe.schedule.cron}'.")


def local_data_path(recipe: Recipe) -> Path | None:
    """The recipe's data file or folder when it is a local one a sensor can watch."""
    if recipe.dataset.source.startswith("package:"):  # installed data does not change under a sensor
        return None
    source = resolve(recipe.dataset.source, recipe.source_file.parent)
    return Path(source.location) if source.kind == "local" else None


def data_digest(path: Path) -> str | None:
    """A hash of the data's content (and file names, for folders); None when there is no data."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_FORMATS) if path.is_dir() else \
        [path] if path.exists() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def new_data_sensor(recipe: Recipe, job):
    """Requests a run when the content of the recipe's local data changes (the cursor holds its hash)."""
    path = local_data_path(recipe)
    if path is None:
        return None

    @sensor(name=f"{recipe.name}_new_data", job=job, minimum_interval_seconds=60,
            default_status=DefaultSensorStatus.STOPPED,
            description=f"Retrain {recipe.name} when {path} changes (content hash, not mtime).")
    def _sensor(context: SensorEvaluationContext):
        digest = data_digest(path)
        if digest is None:
            return SkipReason(f"no data at {path}")
        seen = json.loads(context.cursor) if context.cursor else {}
        if seen.get("digest") == digest:
            return SkipReason(f"{path} unchanged")
        context.update_cursor(json.dumps({"digest": digest}))
        return run_requests(recipe, digest, **{"finetune_assets/data_digest": digest[:16]})

    return _sensor
