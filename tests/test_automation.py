"""Caching by fingerprint, code/data versions, schedules and the new-data sensor, tested with
Dagster's own utilities on a tiny real BERT and files the tests write (the gate: test_promotion.py)."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_films_recipe
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from finetune_assets.defs import build_definitions
from finetune_assets.defs.resources import RunSettings
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.chain import CHAIN
from finetune_assets.recipes import load_recipe

ROWS = [(f"I really loved moment number {i} of this film", "positive") for i in range(40)] + \
       [(f"I truly hated scene number {i} of this film", "negative") for i in range(40)]


@pytest.fixture
def project(films_project):
    recipes, artifacts = films_project
    pd.DataFrame(ROWS, columns=["review", "sentiment"]).to_csv(recipes / "data" / "reviews.csv", index=False)
    return recipes, artifacts


def run(recipes: Path, artifacts: Path, **settings):
    defs = build_definitions([recipes], str(artifacts))
    resources = {**defs.resources, "run_settings": RunSettings(**settings)}
    started = time.monotonic()
    result = materialize([*defs.assets, *defs.asset_checks], resources=resources,
                         instance=DagsterInstance.ephemeral())
    seconds = time.monotonic() - started
    assert result.success
    events = {e.asset_key.path[1]: e.materialization for e in result.get_asset_materialization_events()}
    return events, seconds


def cache_hits(events) -> dict[str, bool]:
    return {name: m.metadata["cache_hit"].value for name, m in events.items()}


def test_second_run_reuses_everything_and_a_hyperparameter_recomputes_from_the_checkpoint(project):
    recipes, artifacts = project
    first, first_seconds = run(recipes, artifacts)
    assert not any(cache_hits(first).values())
    second, second_seconds = run(recipes, artifacts)
    assert all(cache_hits(second).values())
    assert second_seconds < first_seconds
    for name, materialization in second.items():  # same fingerprint, same data version, same path
        assert materialization.metadata["fingerprint"] == first[name].metadata["fingerprint"]
        assert materialization.tags["dagster/data_version"] == first[name].metadata["fingerprint"].value
    assert second["exported_model"].metadata["decision"].value == "already champion"

    write_films_recipe(recipes, training={"max_length": 32, "learning_rate": 5e-4, "epochs": 1})
    third, _ = run(recipes, artifacts)
    assert cache_hits(third) == {"raw_dataset": True, "clean_dataset": True, "tokenized_splits": True,
                                 "finetuned_model": False, "evaluation_report": False, "exported_model": False}


def test_run_config_forces_recomputation_and_overrides_training(project):
    recipes, artifacts = project
    first, _ = run(recipes, artifacts)
    forced, _ = run(recipes, artifacts, force=True)
    assert not any(cache_hits(forced).values())
    assert forced["finetuned_model"].metadata["fingerprint"] == first["finetuned_model"].metadata["fingerprint"]
    smaller, _ = run(recipes, artifacts, max_train_samples=16)
    assert smaller["finetuned_model"].metadata["training_rows"].value == 16
    assert cache_hits(smaller)["tokenized_splits"] and not cache_hits(smaller)["finetuned_model"]


def test_fingerprints_follow_only_the_sections_a_stage_reads(project):
    recipes, _ = project
    base = load_recipe(recipes / "films.yaml")
    upstream = [ArtifactRef("x", "abc")]
    lr = load_recipe(write_films_recipe(recipes, "lr", training={"max_length": 32, "learning_rate": 9e-4}))
    longer = load_recipe(write_films_recipe(recipes, "long", training={"max_length": 64, "learning_rate": 1e-3}))
    same = {stage: CHAIN[stage].fingerprint(base, upstream) == CHAIN[stage].fingerprint(lr, upstream)
            for stage in ("clean_dataset", "tokenized_splits", "finetuned_model")}
    assert same == {"clean_dataset": True, "tokenized_splits": True, "finetuned_model": False}
    assert CHAIN["tokenized_splits"].fingerprint(base, upstream) != CHAIN["tokenized_splits"].fingerprint(longer, upstream)
    assert CHAIN["clean_dataset"].fingerprint(base, upstream) != CHAIN["clean_dataset"].fingerprint(
        base, [ArtifactRef("x", "changed-data")])


def test_code_versions_mark_exactly_the_stale_assets(project):
    recipes, _ = project
    before = build_definitions([recipes]).resolve_asset_graph()
    write_films_recipe(recipes, training={"max_length": 32, "learning_rate": 2e-3, "epochs": 1})
    after = build_definitions([recipes]).resolve_asset_graph()
    changed = {key.path[1] for key in after.get_all_asset_keys()
               if after.get(key).code_version != before.get(key).code_version}
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
        "raw_dataset", "clean_dataset", "tokenized_splits", "finetuned_model", "evaluation_report", "exported_model"}


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
