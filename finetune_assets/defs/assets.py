"""The asset factory: one recipe in, one asset group out, one asset per row of the chain's table.

Every asset does the same thing: apply the run's overrides to the recipe and hand the stage to
the runner (:mod:`finetune_assets.pipeline.runner`), which reuses or computes its artifact. The
fingerprint becomes the asset's Dagster data version and the stage's code plus recipe sections its
code version, so the UI marks exactly the stale assets after a recipe or data change. A stage with
a ``finish`` step also gets the run's facts: the failed checks on its lineage (read from the
instance) and the run's overrides. A run with overrides is tagged, and so is each materialization.
Each asset's inputs are named after the upstream assets; its tags and definition metadata say what
the recipe needs of a machine (:mod:`finetune_assets.defs.requirements`), and a recipe's
``automation:`` gives it an automation condition (:mod:`finetune_assets.defs.automation`).

The training stage's asset also gets the ``training`` resource's process starter (its process runs
through Dagster Pipes), the recipe's concurrency pool (one training per device, while data stages
run freely) and its ``RetryPolicy``: a killed training retries and resumes from its checkpoints,
while bad input (a recipe or data error) fails at once, since a retry cannot fix it.

A recipe with a ``sweep:`` gets one more asset, ``sweep_report``, and its variants become the
partitions (``StaticPartitionsDefinition``) of the per-variant stages (``finetuned_model``,
``evaluation_report``), each run under its variant's recipe; the data assets stay unpartitioned and
shared. ``exported_model`` then reads the sweep report's choice: the chosen variant's references
and recipe, so the promotion gate judges that variant. A recipe without a sweep is unchanged.

The checks a stage judges itself (the quality gates of ``finetuned_model`` and ``evaluation_report``,
the export's ``merge_verified`` and ``export_reloads``) are the asset's ``check_specs``: the asset
reports their results itself, judged before its finish step decided (:mod:`finetune_assets.defs.checks`).

A recipe whose ``base_model`` is ``recipe:<name>`` starts from that recipe's champion: its first stage
that uses the base (``tokenized_splits``; ``clean_dataset`` where the starting model writes preference
pairs' rejected answers) depends on ``<name>/exported_model``, whose data version is the champion's
fingerprint, so the graph shows the lineage and a new champion marks the recipe stale.
"""

import socket

from dagster import (
    AssetCheckKey,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    DataVersion,
    Failure,
    MaterializeResult,
    RetryPolicy,
    StaticPartitionsDefinition,
    asset,
)
from dagster._check import CheckError
from dagster._core.errors import DagsterExecutionInterruptedError

from finetune_assets.checks.registry import checks_for
from finetune_assets.defs import automation
from finetune_assets.defs.check_results import lineage_failures
from finetune_assets.defs.checks import check_result, stage_check_specs
from finetune_assets.defs.metadata import column_schema, to_dagster
from finetune_assets.defs.requirements import requirement_metadata, requirement_tags
from finetune_assets.defs.run_launcher import HOST_TAG
from finetune_assets.errors import BAD_INPUT
from finetune_assets.pipeline.caching import ancestry
from finetune_assets.pipeline.chain import CHAIN, SWEEP_REPORT, Stage, stages_of
from finetune_assets.pipeline.facts import RunFacts
from finetune_assets.pipeline.processes import run_process
from finetune_assets.pipeline.runner import run_stage
from finetune_assets.promotion import sweep_report
from finetune_assets.recipes import Recipe
from finetune_assets.recipes.sweep import variant, variants
from finetune_assets.training.failure import TrainingFailed

OVERRIDES_TAG = "finetune_assets/run_overrides"
INTERRUPTED = (
    "interrupted (SIGTERM or SIGINT): the training process was stopped and the run ends; "
    "its checkpoints stay, and the next run resumes from the newest"
)
SETTINGS_TAG = "finetune_assets/run_settings"


def build_assets(recipe: Recipe) -> list[AssetsDefinition]:
    """One asset per stage of the recipe's chain; with a ``sweep:``, its variants are the partitions of
    the per-variant stages."""
    sweep = StaticPartitionsDefinition([made.name for made in variants(recipe)]) if recipe.sweep is not None else None
    return [stage_asset(recipe, stage, sweep) for stage in stages_of(recipe)]


def stage_asset(recipe: Recipe, stage: Stage, sweep: StaticPartitionsDefinition | None = None) -> AssetsDefinition:
    key = AssetKey([recipe.name, stage.name])
    partitioned = sweep is not None and stage.per_variant
    # In a sweep, a stage after the per-variant ones (the export) gets their references, and its
    # recipe, from the variant the sweep report chose.
    reads_choice = sweep is not None and not stage.per_variant and any(CHAIN[up].per_variant for up in stage.upstream)

    @asset(
        key=key,
        group_name=recipe.name,
        ins=_inputs(recipe, stage, reads_choice),
        deps=_deps(recipe, stage),
        partitions_def=sweep if partitioned else None,
        description=_description(recipe, stage, partitioned, reads_choice),
        code_version=stage.version(recipe),
        io_manager_key="artifact_refs",
        kinds=set(stage.kinds),
        tags=requirement_tags(recipe),
        metadata=requirement_metadata(recipe),
        automation_condition=automation.condition(recipe, stage),
        check_specs=stage_check_specs(recipe, stage.name, partitioned),
        **_training_options(recipe, stage),
    )
    def _asset(context: AssetExecutionContext, **refs):
        run_settings = context.resources.run_settings
        name, chosen = sweep_report.chosen(refs[SWEEP_REPORT.name]) if reads_choice else (None, {})
        upstream = [chosen[up] if up in chosen else refs[up] for up in stage.upstream]
        facts = RunFacts(
            failed_checks=_failed_checks(context, recipe, stage, upstream) if stage.finish else None,
            overrides=run_settings.overrides(),
            promote_with_overrides=run_settings.promote,
            run_id=context.run_id,
            tracking_uri=context.resources.mlflow.tracking_uri if stage.publishes else "",
        )
        _tag_run(context, facts, run_settings.describe_settings())
        try:
            active = run_settings.apply(recipe)
            if partitioned or reads_choice:  # the variant's recipe: the run's overrides, then the sweep's
                active = variant(active, context.partition_key if partitioned else name)
            root = context.resources.artifacts.base
            start_process = context.resources.training.starter(context, active, root) if stage.trains else run_process
            ref, metadata, checks = run_stage(
                stage, active, root, context.log, upstream, run_settings.forced(recipe), facts, start_process
            )
        except BAD_INPUT as error:
            if not stage.trains:
                raise
            raise Failure(description=str(error), allow_retries=False) from error
        except TrainingFailed as error:  # what failed; retried (RetryPolicy) only where a retry can help
            raise Failure(description=str(error), allow_retries=error.retryable) from error
        except (DagsterExecutionInterruptedError, KeyboardInterrupt) as error:
            if not stage.trains:
                raise
            # Dagster retries an interrupted step that has a RetryPolicy, in the same run: SIGTERM
            # would resume the training instead of stopping the run. The Pipes client has already
            # sent the training process SIGINT; its checkpoints stay for the next run.
            raise Failure(description=INTERRUPTED, allow_retries=False) from error
        yield from _results(stage, active, facts, ref, metadata, checks)

    return _asset


def _deps(recipe: Recipe, stage: Stage) -> list[AssetDep] | None:
    """Upstream assets read from disk rather than handed in: the sweep report's per-variant
    evaluations, and for the first stage that uses a ``recipe:<name>`` base, ``<name>/exported_model``."""
    deps = [AssetDep(AssetKey([recipe.name, stage.compares]))] if stage.compares else []
    followed = automation.base_champion_asset(recipe)
    if followed and stage is next(step for step in stages_of(recipe) if step.uses_base(recipe)):
        deps.append(AssetDep(followed))
    return deps or None


def _inputs(recipe: Recipe, stage: Stage, reads_choice: bool) -> dict[str, AssetIn]:
    """Inputs named after the upstream stage, so the run log says `Loaded input "clean_dataset"`; a
    stage reading the sweep's choice gets the sweep report instead of the per-variant stages."""
    ins = {
        up: AssetIn(key=AssetKey([recipe.name, up]))
        for up in stage.upstream
        if not (reads_choice and CHAIN[up].per_variant)
    }
    if reads_choice:
        ins[SWEEP_REPORT.name] = AssetIn(key=AssetKey([recipe.name, SWEEP_REPORT.name]))
    return ins


def _description(recipe: Recipe, stage: Stage, partitioned: bool, reads_choice: bool) -> str:
    sweep_note = (
        "\n\nOne partition per variant of the recipe's sweep."
        if partitioned
        else f"\n\nExports the variant {SWEEP_REPORT.name} chose."
        if reads_choice
        else ""
    )
    return f"{stage.describe(recipe)}{sweep_note}\n\nRecipe {recipe.source_file.name}: {recipe.description}".strip()


def _training_options(recipe: Recipe, stage: Stage) -> dict:
    """The training stage holds a device (the recipe's concurrency pool), gets the ``training``
    resource and retries (its ``RetryPolicy``); the other stages none of these. The publishing stage
    gets the ``mlflow`` resource."""
    compute = recipe.compute
    own = {"training"} if stage.trains else {"mlflow"} if stage.publishes else set()
    return {
        "required_resource_keys": {"artifacts", "run_settings"} | own,
        "pool": compute.pool if stage.trains else None,
        "retry_policy": RetryPolicy(max_retries=compute.retries, delay=compute.retry_delay_seconds)
        if stage.trains and compute.retries
        else None,
    }


def _results(stage: Stage, active: Recipe, facts: RunFacts, ref, metadata: dict, checks):
    """The materialization (the reference, its data version, the stage's metadata) and the results
    of the checks the stage judged on it."""
    if stage.row_schema:
        metadata = {**metadata, **column_schema(stage.row_schema(active))}
    if active.variant:
        metadata = {**metadata, "variant": active.variant}
    # Materialization tags allow few characters: the names here, the values in the metadata.
    tags = {OVERRIDES_TAG: "-".join(sorted(facts.overrides))} if facts.overrides else {}
    if facts.overrides:
        metadata = {**metadata, "run_overrides": facts.describe_overrides()}
    yield MaterializeResult(
        value=ref,
        data_version=DataVersion(ref.fingerprint),
        tags=tags,
        metadata={**to_dagster(metadata), "fingerprint": ref.fingerprint},
    )
    for judgement in checks:
        yield check_result(judgement)


def _tag_run(context: AssetExecutionContext, facts: RunFacts, settings: str) -> None:
    """The machine the run works on (so run monitoring can tell a dead run from a live one), the
    run's overrides (so its figures are told apart from a production run's) and its other run
    settings (forced, promoting a smoke run, trained elsewhere)."""
    tags = {
        HOST_TAG: socket.gethostname(),
        **({OVERRIDES_TAG: facts.describe_overrides()} if facts.overrides else {}),
        **({SETTINGS_TAG: settings} if settings else {}),
    }
    if any(context.run.tags.get(key) != value for key, value in tags.items()):
        context.instance.add_run_tags(context.run_id, tags)


def _failed_checks(context: AssetExecutionContext, recipe: Recipe, stage: Stage, upstream) -> tuple:
    """The failed (or missing) check results on every artifact this stage's output is made from."""
    lineage = {
        AssetKey([recipe.name, name]): entry["fingerprint"]
        for name, entry in ancestry(**dict(zip(stage.upstream, upstream))).items()
    }
    ours = {AssetCheckKey(AssetKey([recipe.name, check.asset]), check.name) for check in checks_for(recipe)}
    try:  # every check on those assets, including those a merged project added
        graph = context.repository_def.asset_graph
    except CheckError:  # dagster.materialize() runs without a repository: the run's own graph
        graph = context.job_def.asset_layer.asset_graph
    return lineage_failures(context.instance, ours | set(graph.get_check_keys_for_assets(set(lineage))), lineage)
