"""Caching by fingerprint, code/data versions, schedules, the new-data sensor and the recipe's
declarative automation, tested with Dagster's own utilities on a tiny real BERT and files the tests
write (the gate: test_promotion.py)."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_films_recipe
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from finetune_assets.defs import build_definitions
from finetune_assets.defs.resources import RunSettings
from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.chain import CHAIN
from finetune_assets.recipes import load_recipe

ROWS = [(f"I really loved moment number {i} of this film", "positive") for i in range(40)] + [
    (f"I truly hated scene number {i} of this film", "negative") for i in range(40)
]


@pytest.fixture
def project(films_project):
    recipes, artifacts = films_project
    pd.DataFrame(ROWS, columns=["review", "sentiment"]).to_csv(recipes / "data" / "reviews.csv", index=False)
    return recipes, artifacts


def run(recipes: Path, artifacts: Path, **settings):
    defs = build_definitions([recipes], str(artifacts))
    resources = {**defs.resources, "run_settings": RunSettings(**settings)}
    started = time.monotonic()
    result = materialize([*defs.assets, *defs.asset_checks], resources=resources, instance=DagsterInstance.ephemeral())
    seconds = time.monotonic() - started
    assert result.success
    events = {e.asset_key.path[1]: e.materialization for e in result.get_asset_materialization_events()}
    return events, seconds


def cache_hits(events) -> dict[str, bool]:
    return {name: m.metadata["cache_hit"].value for name, m in events.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert):
    """Whole runs of the films recipe, one after another on one artifacts root: ``first`` (nothing
    cached), ``second`` (the same recipe), ``forced`` (``force``), ``third`` (a new learning rate),
    ``smaller`` (``max_train_samples``), each as (materializations, seconds)."""
    root = tmp_path_factory.mktemp("automation_runs")
    (root / "bert").symlink_to(tiny_bert)
    recipes, artifacts = root / "recipes", root / "artifacts"
    (recipes / "data").mkdir(parents=True)
    write_films_recipe(recipes)
    pd.DataFrame(ROWS, columns=["review", "sentiment"]).to_csv(recipes / "data" / "reviews.csv", index=False)
    done = {"first": run(recipes, artifacts), "second": run(recipes, artifacts)}
    done["forced"] = run(recipes, artifacts, force=True)
    write_films_recipe(recipes, training={"max_length": 32, "learning_rate": 5e-4, "epochs": 1})
    done["third"] = run(recipes, artifacts)
    done["smaller"] = run(recipes, artifacts, max_train_samples=16)
    return done


def test_second_run_reuses_everything_and_a_hyperparameter_recomputes_from_the_checkpoint(runs):
    (first, first_seconds), (second, second_seconds) = runs["first"], runs["second"]
    assert not any(cache_hits(first).values())
    assert all(cache_hits(second).values())
    assert second_seconds < first_seconds
    for name, materialization in second.items():  # same fingerprint, same data version, same path
        assert materialization.metadata["fingerprint"] == first[name].metadata["fingerprint"]
        assert materialization.tags["dagster/data_version"] == first[name].metadata["fingerprint"].value
    assert second["exported_model"].metadata["decision"].value == "already champion"
    third, _ = runs["third"]  # after a forced run of the same recipe, which changed no fingerprint
    assert cache_hits(third) == {
        "raw_dataset": True,
        "clean_dataset": True,
        "tokenized_splits": True,
        "finetuned_model": False,
        "evaluation_report": False,
        "exported_model": False,
    }


def test_run_config_forces_recomputation_and_overrides_training(runs):
    (first, _), (forced, _), (smaller, _) = runs["first"], runs["forced"], runs["smaller"]
    assert not any(cache_hits(forced).values())
    assert forced["finetuned_model"].metadata["fingerprint"] == first["finetuned_model"].metadata["fingerprint"]
    assert smaller["finetuned_model"].metadata["training_rows"].value == 16
    assert cache_hits(smaller)["tokenized_splits"] and not cache_hits(smaller)["finetuned_model"]


def test_fingerprints_follow_only_the_sections_a_stage_reads(project):
    recipes, _ = project
    base = load_recipe(recipes / "films.yaml")
    upstream = [ArtifactRef("x", "abc")]
    lr = load_recipe(write_films_recipe(recipes, "lr", training={"max_length": 32, "learning_rate": 9e-4}))
    longer = load_recipe(write_films_recipe(recipes, "long", training={"max_length": 64, "learning_rate": 1e-3}))
    same = {
        stage: CHAIN[stage].fingerprint(base, upstream) == CHAIN[stage].fingerprint(lr, upstream)
        for stage in ("clean_dataset", "tokenized_splits", "finetuned_model")
    }
    assert same == {"clean_dataset": True, "tokenized_splits": True, "finetuned_model": False}
    assert CHAIN["tokenized_splits"].fingerprint(base, upstream) != CHAIN["tokenized_splits"].fingerprint(
        longer, upstream
    )
    assert CHAIN["clean_dataset"].fingerprint(base, upstream) != CHAIN["clean_dataset"].fingerprint(
        base, [ArtifactRef("x", "changed-data")]
    )


def test_code_versions_mark_exactly_the_stale_assets(project):
    recipes, _ = project
    before = build_definitions([recipes]).resolve_asset_graph()
    write_films_recipe(recipes, training={"max_length": 32, "learning_rate": 2e-3, "epochs": 1})
    after = build_definitions([recipes]).resolve_asset_graph()
    changed = {
        key.path[1] for key in after.get_all_asset_keys() if after.get(key).code_version != before.get(key).code_version
    }
    assert changed == {"finetuned_model"}  # evaluation and export go stale through its data version


def test_schedule_is_stopped_by_default_and_requests_the_recipe_job(project):
    recipes, _ = project
    write_films_recipe(recipes, schedule={"cron": "0 3 * * 1", "timezone": "Europe/Berlin"})
    defs = build_definitions([recipes])
    schedule = defs.resolve_schedule_def("films_schedule")
    assert schedule.cron_schedule == "0 3 * * 1" and schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    context = build_schedule_context(scheduled_execution_time=datetime.datetime(2026, 11, 30, 3, 0))
    requests = schedule.evaluate_tick(context).run_requests
    assert len(requests) == 1 and schedule.job_name == "films_job"
    job = defs.resolve_job_def("films_job")
    assert {key.path[1] for key in job.asset_layer.executable_asset_keys} == {
        "raw_dataset",
        "clean_dataset",
        "tokenized_splits",
        "finetuned_model",
        "evaluation_report",
        "exported_model",
    }


def test_sensor_requests_one_run_per_content_change(project):
    recipes, _ = project
    data = recipes / "data"
    for file in data.iterdir():
        file.unlink()
    defs = build_definitions([recipes])
    sensor = defs.resolve_sensor_def("films_new_data")
    assert sensor.default_status == DefaultSensorStatus.STOPPED

    def tick(cursor):
        context = build_sensor_context(cursor=cursor)
        result = sensor.evaluate_tick(context)
        return result, context.cursor

    result, cursor = tick(None)
    assert not result.run_requests and "no data" in result.skip_message
    pd.DataFrame(ROWS, columns=["review", "sentiment"]).to_csv(data / "reviews.csv", index=False)
    result, cursor = tick(cursor)
    assert len(result.run_requests) == 1
    result, cursor = tick(cursor)
    assert not result.run_requests and "unchanged" in result.skip_message
    (data / "reviews.csv").touch()  # a new modification time alone is not new data
    result, cursor = tick(cursor)
    assert not result.run_requests
    pd.DataFrame(ROWS[:60], columns=["review", "sentiment"]).to_csv(data / "more.csv", index=False)
    result, cursor = tick(cursor)
    assert len(result.run_requests) == 1


def test_packaged_data_has_no_sensor():
    defs = build_definitions()
    names = {s.name for s in defs.sensors}
    assert "tweet_sentiment_new_data" not in names


# --- declarative automation (automation: in the recipe) --------------------------------------------

DATA = ("raw_dataset", "clean_dataset", "tokenized_splits")
RETRAIN = ("finetuned_model", "evaluation_report", "exported_model")


def test_automation_conditions_attach_to_the_data_and_retrain_assets_and_their_sensor_is_stopped(project):
    recipes, _ = project
    write_films_recipe(recipes, automation={"data": "eager", "retrain": {"cron": "0 3 * * 1"}})
    write_films_recipe(recipes, "weekly", automation={"retrain": {"cron": "0 3 * * 1", "timezone": "Europe/Berlin"}})
    defs = build_definitions([recipes])
    graph = defs.resolve_asset_graph()

    def label(recipe, stage):
        return graph.get(AssetKey([recipe, stage])).automation_condition.get_label()

    assert {label("films", stage) for stage in DATA} == {"eager"}
    assert {label("films", stage) for stage in RETRAIN} == {
        "retrain on '0 3 * * 1' (UTC) once every blocking check upstream passed"
    }
    # Without data: eager, the data is re-read on the same cron, so the retraining has fresh data.
    assert {label("weekly", stage) for stage in DATA} == {"on_cron(0 3 * * 1, Europe/Berlin)"}
    for recipe in ("films", "weekly"):
        sensor = defs.resolve_sensor_def(f"{recipe}_automation")
        assert sensor.default_status == DefaultSensorStatus.STOPPED
    # New data then only refreshes raw_dataset: the conditions take it from there.
    tick = defs.resolve_sensor_def("films_new_data").evaluate_tick(build_sensor_context(cursor=None))
    assert [request.asset_selection for request in tick.run_requests] == [[AssetKey(["films", "raw_dataset"])]]


def test_the_quickstart_ships_a_stopped_retraining_automation():
    defs = build_definitions()
    sensor = defs.resolve_sensor_def("tweet_sentiment_automation")
    assert sensor.default_status == DefaultSensorStatus.STOPPED
    assert defs.resolve_asset_graph().get(AssetKey(["tweet_sentiment", "finetuned_model"])).automation_condition


def test_a_bad_cron_makes_its_recipe_broken_and_leaves_the_others(project):
    recipes, _ = project
    write_films_recipe(recipes, "typo", automation={"retrain": {"cron": "0 3 * *"}})
    defs = build_definitions([recipes], strict=False)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "films/exported_model" in keys and "broken_recipes/typo" in keys
    with pytest.raises(RecipeError, match=r"typo.yaml: automation.retrain.cron: '0 3 \* \*' is not a cron"):
        build_definitions([recipes], strict=True)


def test_retraining_waits_for_passed_blocking_checks_and_new_data_refreshes_the_data_assets(project):
    """Real runs of the data stages on one instance, then Dagster's own condition evaluation. The
    cron ticks every minute so that real materializations fall after a tick."""
    recipes, artifacts = project
    write_films_recipe(recipes, automation={"data": "eager", "retrain": {"cron": "* * * * *"}})
    write_films_recipe(
        recipes,
        "few",
        checks={"min_rows_per_split": 100},  # an ERROR check fails
        automation={"data": "eager", "retrain": {"cron": "* * * * *"}},
    )
    defs = build_definitions([recipes], str(artifacts))
    instance = DagsterInstance.ephemeral()

    def requested(at, cursor=None):
        result = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=at, cursor=cursor)
        return {
            (recipe, stage)
            for recipe in ("films", "few")
            for stage in (*DATA, *RETRAIN)
            if result.get_num_requested(AssetKey([recipe, stage]))
        }, result.cursor

    def materialize_stages(*stages):
        selection = AssetSelection.assets(*(AssetKey([r, s]) for r in ("films", "few") for s in stages))
        materialize(
            [*defs.assets, *defs.asset_checks],
            selection=selection,
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
        )
        return max(
            instance.get_latest_materialization_event(AssetKey([r, stages[-1]])).timestamp for r in ("films", "few")
        )

    start = datetime.datetime.now(datetime.UTC)
    _, cursor = requested(start - datetime.timedelta(hours=1))
    done = materialize_stages(*DATA)
    after = datetime.datetime.fromtimestamp(done + 0.001, datetime.UTC)
    now_requested, cursor = requested(after, cursor)
    assert now_requested == {("films", stage) for stage in RETRAIN}, "few's min_rows_per_split failed: no retraining"
    again, cursor = requested(after + datetime.timedelta(seconds=1), cursor)
    assert not again, "once per cron period"
    pd.DataFrame(ROWS[:70], columns=["review", "sentiment"]).to_csv(recipes / "data" / "reviews.csv", index=False)
    done = materialize_stages("raw_dataset")
    refreshed, _ = requested(datetime.datetime.fromtimestamp(done + 0.001, datetime.UTC), cursor)
    assert {("films", "clean_dataset"), ("films", "tokenized_splits")} <= refreshed
    assert not {(recipe, stage) for recipe, stage in refreshed if stage in RETRAIN}
