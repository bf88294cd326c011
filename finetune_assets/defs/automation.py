"""Retraining that runs itself: a job per recipe, its optional schedule, a new-data sensor, and the
declarative automation a recipe's ``automation:`` asks for.

Schedules and sensors are created stopped; a person starts them in the UI (Automation tab). Their
runs are ordinary materializations of the recipe's group, so caching skips what did not change.
A recipe with a sweep gets one run per variant (its partition): each trains its variant, then the
sweep report compares every variant evaluated so far and the gate judges the best.

``automation:`` attaches Dagster ``AutomationCondition``s to the assets instead of requesting whole
runs: ``data: eager`` refreshes ``raw_dataset``'s followers (``clean_dataset``, ``tokenized_splits``)
whenever it is materialized; ``retrain: {cron: ...}`` runs ``finetuned_model`` and everything after
it once per cron period, only when every blocking check on their upstream assets passed
(``on_cron`` and ``all_deps_blocking_checks_passed``). With ``retrain`` alone, the data assets run
on the cron too (a cache hit when the data did not change). The recipe's ``<recipe>_automation``
sensor evaluates the conditions; like every sensor here it is created stopped.

A recipe whose ``base_model`` is ``recipe:<name>`` follows ``<name>/exported_model`` (an edge into its
first stage that uses the base, ``tokenized_splits`` or self-play's ``clean_dataset``): with ``data:
eager`` a new materialization there refreshes that stage at once (a cache hit unless the champion
changed); ``retrain``'s cron does not wait for it, and picks up a new champion through the fingerprints.
"""

import hashlib
import json
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
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
from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.chain import Stage, stages_of
from finetune_assets.pipeline.stage_names import EXPORTED_MODEL, RAW_DATASET
from finetune_assets.recipes import Recipe
from finetune_assets.recipes.schema import ScheduleSpec
from finetune_assets.recipes.sweep import variants


def recipe_job(recipe: Recipe):
    return define_asset_job(
        f"{recipe.name}_job",
        selection=AssetSelection.groups(recipe.name),
        description=f"Materialize every asset (and check) of recipe {recipe.name}.",
    )


def run_requests(recipe: Recipe, run_key: str | None = None, **tags: str) -> list[RunRequest]:
    """The runs that retrain the recipe: one, or with a sweep one per variant (partition), each with
    its own run key (a schedule tick dedupes its requests by it)."""
    names = [made.name for made in variants(recipe)] or [None]
    return [
        RunRequest(run_key=":".join(filter(None, (run_key, name))) or None, partition_key=name, tags=tags)
        for name in names
    ]


def recipe_schedule(recipe: Recipe, job) -> ScheduleDefinition | None:
    if recipe.schedule is None:
        return None
    _valid_cron(recipe, "schedule", recipe.schedule)

    def requests(context):  # a schedule takes its run requests as a generator, not a list
        yield from run_requests(recipe)

    return ScheduleDefinition(
        name=f"{recipe.name}_schedule",
        job=job,
        cron_schedule=recipe.schedule.cron,
        execution_timezone=recipe.schedule.timezone,
        execution_fn=requests,
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Retrain {recipe.name} on '{recipe.schedule.cron}'.",
    )


def local_data_path(recipe: Recipe) -> Path | None:
    """The recipe's data file or folder when it is a local one a sensor can watch."""
    if recipe.dataset.source.startswith("package:"):  # installed data does not change under a sensor
        return None
    source = resolve(recipe.dataset.source, recipe.source_file.parent)
    return Path(source.location) if source.kind == "local" else None


def data_digest(path: Path) -> str | None:
    """A hash of the data's content (and file names, for folders); None when there is no data."""
    files = (
        sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_FORMATS)
        if path.is_dir()
        else [path]
        if path.exists()
        else []
    )
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

    @sensor(
        name=f"{recipe.name}_new_data",
        job=job,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description=f"Retrain {recipe.name} when {path} changes (content hash, not mtime).",
    )
    def _sensor(context: SensorEvaluationContext):
        digest = data_digest(path)
        if digest is None:
            return SkipReason(f"no data at {path}")
        seen = json.loads(context.cursor) if context.cursor else {}
        if seen.get("digest") == digest:
            return SkipReason(f"{path} unchanged")
        context.update_cursor(json.dumps({"digest": digest}))
        tags = {"finetune_assets/data_digest": digest[:16]}
        if recipe.automation and recipe.automation.data == "eager":  # the conditions take it from there
            return [RunRequest(run_key=digest, asset_selection=[AssetKey([recipe.name, RAW_DATASET])], tags=tags)]
        return run_requests(recipe, digest, **tags)

    return _sensor


def condition(recipe: Recipe, stage: Stage) -> AutomationCondition | None:
    """The ``AutomationCondition`` the recipe's ``automation:`` gives ``stage``'s asset, if any."""
    spec = recipe.automation
    if spec is None:
        return None
    if not _retrains(recipe, stage):
        if spec.data == "eager":
            return AutomationCondition.eager()
        return _on_cron(recipe, spec.retrain) if spec.retrain else None
    if spec.retrain is None:
        return None
    return (_on_cron(recipe, spec.retrain) & AutomationCondition.all_deps_blocking_checks_passed()).with_label(
        f"retrain on '{spec.retrain.cron}' ({spec.retrain.timezone}) once every blocking check upstream passed"
    )


def automation_sensor(recipe: Recipe) -> AutomationConditionSensorDefinition | None:
    """Evaluates the conditions of the recipe's assets; stopped until a person starts it."""
    if recipe.automation is None:
        return None
    return AutomationConditionSensorDefinition(
        f"{recipe.name}_automation",
        target=AssetSelection.groups(recipe.name),
        default_status=DefaultSensorStatus.STOPPED,
        description=f"Evaluates the automation conditions of recipe {recipe.name} (its automation: section).",
    )


def _retrains(recipe: Recipe, stage: Stage) -> bool:
    """Whether ``stage`` is the training stage or comes after it in the recipe's chain."""
    chain = stages_of(recipe)
    first = next(i for i, step in enumerate(chain) if step.trains)
    return [step.name for step in chain].index(stage.name) >= first


def _on_cron(recipe: Recipe, spec: ScheduleSpec) -> AutomationCondition:
    """Once per cron period, when the recipe's own upstream assets were updated since the tick: the
    champion a ``recipe:<name>`` base names need not be (a new one is picked up by the fingerprints)."""
    _valid_cron(recipe, "automation.retrain", spec)
    on_cron = AutomationCondition.on_cron(spec.cron, spec.timezone)
    followed = base_champion_asset(recipe)
    return on_cron.ignore(AssetSelection.assets(followed)) if followed else on_cron


def base_champion_asset(recipe: Recipe) -> AssetKey | None:
    """``<name>/exported_model`` for a recipe whose ``base_model`` is ``recipe:<name>``: its data
    version is the champion's fingerprint, so a new champion marks the recipe's assets stale."""
    return AssetKey([recipe.base_recipe, EXPORTED_MODEL]) if recipe.base_recipe else None


def _valid_cron(recipe: Recipe, key: str, spec: ScheduleSpec) -> None:
    """Dagster refuses a bad cron string when it builds the schedule or condition; say which recipe
    and key hold it, so the recipe shows up as broken instead of taking the code location down."""
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(spec.cron):
        raise RecipeError(
            f"{recipe.source_file}: {key}.cron: '{spec.cron}' is not a cron schedule (five "
            "fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * 1')"
        )
