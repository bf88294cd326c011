"""Sweeps: a recipe's variants trained side by side as partitions, compared on the same test rows,
the best one exported through the promotion gate. The variants' names and errors are unit-tested;
whole sweeps run on the tiny real BERT (the films recipe of conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import FILMS, write_films_recipe
from dagster import (
    AllPartitionMapping,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    materialize,
)

from finetune_assets.defs import build_definitions
from finetune_assets.defs.build import BROKEN_GROUP
from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.chain import CHAIN, STAGES
from finetune_assets.promotion.champion_scores import SETTINGS
from finetune_assets.recipes import SHIPPED_DIR, load_recipe
from finetune_assets.recipes.sweep import SHARED, SWEEPABLE, variants

VENV_BIN = Path(sys.executable).parent


def sweep_recipe(tmp_path: Path, sweep) -> Path:
    path = tmp_path / "swept.yaml"
    path.write_text(yaml.safe_dump({**FILMS, "method": "full", "sweep": sweep}, sort_keys=False))
    return path


# --- variants: names, order, the schema's validation --------------------------------------------


def test_a_grid_makes_every_combination_with_readable_stable_names(tmp_path):
    recipe = load_recipe(
        sweep_recipe(tmp_path, {"training.learning_rate": [5.0e-5, 1.0e-4], "method": ["full", "lora"]})
    )
    made = variants(recipe)
    assert [v.name for v in made] == [
        "lr=5e-05,method=full",
        "lr=5e-05,method=lora",
        "lr=0.0001,method=full",
        "lr=0.0001,method=lora",
    ]
    fourth = made[3].recipe
    assert (fourth.training.learning_rate, fourth.method, fourth.variant) == (1.0e-4, "lora", made[3].name)
    assert fourth.sweep is None and fourth.training.max_length == recipe.training.max_length
    assert recipe.method == "full" and recipe.training.learning_rate == FILMS["training"]["learning_rate"]


def test_a_list_of_overrides_names_each_entry_by_what_it_changes(tmp_path):
    recipe = load_recipe(
        sweep_recipe(
            tmp_path,
            [
                {},
                {"method": "lora", "lora.r": 16, "training.epochs": 2},
                {"lora.target_modules": ["query", "value"], "method": "lora"},
            ],
        )
    )
    made = variants(recipe)
    assert [v.name for v in made] == ["as-written", "epochs=2,method=lora,r=16", "method=lora,targets=query+value"]
    assert made[1].recipe.lora.r == 16 and made[1].recipe.training.epochs == 2.0
    assert made[2].recipe.lora.target_modules == ["query", "value"]


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"training.learning_rat": [1e-4]}, "sweep.training.learning_rat: unknown key"),
        (
            {"training.learning_rate": [1e-4, -1]},
            "sweep.training.learning_rate: Input should be greater than 0 (got -1)",
        ),
        ({"method": ["full", "sgd"]}, "sweep.method: Input should be 'full', 'lora' or 'qlora' (got 'sgd')"),
        ({"training.max_length": [32, 64]}, "sweep.training.max_length: every variant must share it: tokenized_splits"),
        ({"training.seed": [1, 2]}, "sweep.training.seed: every variant must share it: it picks the sampled test rows"),
        ({"dataset.source": ["a.csv"]}, "sweep.dataset.source: a sweep varies training.*, lora.* and method only"),
        ({"training": {"learning_rate": [1e-4]}}, "sweep.training: a sweep varies training.*, lora.* and method only"),
        ({"training.learning_rate": 1e-4}, "sweep.training.learning_rate: a grid lists the values to try"),
        (
            {"lora.r": [8, 16], "method": ["full", "lora"]},
            "sweep variant method=full,r=8: sets lora.* with method full",
        ),
        ([{"method": "lora"}, {"method": "lora"}], "sweep: the variant method=lora is listed twice"),
        ([{"method": "lora"}, "lora"], "sweep[2]: each entry is a mapping of settings"),
        ({}, "sweep: a grid {training.learning_rate: [5.0e-5, 1.0e-4], method: [full, lora]} or a list"),
    ],
)
def test_a_bad_sweep_is_an_error_naming_the_file_and_the_key(tmp_path, sweep, message):
    path = sweep_recipe(tmp_path, sweep)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert str(caught.value).startswith(f"{path.resolve()}: invalid recipe\n") and message in str(caught.value)


def test_the_shipped_sweep_is_the_quickstart_as_a_2x2_grid_on_a_slice():
    sweep, quickstart = (
        load_recipe(SHIPPED_DIR / f"{name}.yaml") for name in ("tweet_sentiment_sweep", "tweet_sentiment")
    )
    made = variants(sweep)
    assert [v.name for v in made] == [
        "lr=0.0001,method=full",
        "lr=0.001,method=full",
        "lr=0.0001,method=lora",
        "lr=0.001,method=lora",
    ]
    assert sweep.training.max_train_samples == 2000 and sweep.training.max_eval_samples == 500
    assert (sweep.base_model, sweep.dataset, sweep.splits) == (
        quickstart.base_model,
        quickstart.dataset,
        quickstart.splits,
    )


def test_a_recipe_with_a_bad_sweep_becomes_a_broken_recipe_asset(tmp_path):
    sweep_recipe(tmp_path, {"training.learning_rat": [1e-4]})
    defs = build_definitions([tmp_path], strict=False)
    broken = next(a for a in defs.assets if a.key == AssetKey([BROKEN_GROUP, "swept"]))
    assert "sweep.training.learning_rat: unknown key" in broken.descriptions_by_key[broken.key]


def test_what_a_sweep_may_not_vary_covers_everything_the_shared_stages_and_the_test_rows_depend_on():
    shared_stages = [
        stage for stage in STAGES if not stage.per_variant and not any(CHAIN[up].per_variant for up in stage.upstream)
    ]
    assert [stage.name for stage in shared_stages] == ["raw_dataset", "clean_dataset", "tokenized_splits"]
    read = {key for stage in shared_stages for key in stage.reads} | set(SETTINGS)
    sweepable = {key for key in read if key.startswith(SWEEPABLE) or key == "method"}
    assert sweepable == set(SHARED), "a sweepable key the shared stages or the scored rows read must be in SHARED"


# --- Dagster: partitions, the comparison, the export ---------------------------------------------

POSITIVE = ["loved", "adored", "enjoyed", "liked", "praised", "admired"]
NEGATIVE = ["hated", "loathed", "disliked", "despised", "resented", "deplored"]


@pytest.fixture
def project(films_project):
    recipes, artifacts = films_project
    rows = [(f"I {POSITIVE[i % 6]} part {i} of the film", "positive") for i in range(60)]
    rows += [(f"I {NEGATIVE[i % 6]} part {i} of the film", "negative") for i in range(60)]
    pd.DataFrame(rows, columns=["review", "sentiment"]).to_csv(recipes / "data" / "reviews.csv", index=False)
    return recipes, artifacts


def sweep_of(learning_rates: list[float]) -> dict:
    """The films recipe trained for 4 epochs (enough steps for a good rate to learn), over these rates."""
    return {"training": {**FILMS["training"], "epochs": 4}, "sweep": {"training.learning_rate": learning_rates}}


def key(name: str) -> AssetKey:
    return AssetKey(["films", name])


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The comparison table as {variant: {column: cell}}."""
    lines = [
        line.strip("|").split(" | ")
        for line in markdown.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ]
    header, *rows = [[cell.strip() for cell in line] for line in lines]
    return {row[0]: dict(zip(header, row)) for row in rows}


def materialize_sweep(recipes: Path, artifacts: Path, instance: DagsterInstance, variants_to_run=None):
    """What README's command does: each variant's partition (with the data stages and their checks),
    then the sweep report and the export. Returns every materialization by (asset, partition)."""
    defs = build_definitions([recipes], str(artifacts))
    everything = [*defs.assets, *defs.asset_checks]
    names = (
        defs.resolve_assets_def(key("finetuned_model")).partitions_def.get_partition_keys()
        if variants_to_run is None
        else variants_to_run
    )
    events = {}
    for name in names:
        result = materialize(
            everything,
            instance=instance,
            resources=defs.resources,
            partition_key=name,
            selection=AssetSelection.assets(key("evaluation_report")).upstream(),
        )
        assert result.success
        for event in result.get_asset_materialization_events():  # the data stages: their first run
            events.setdefault((event.asset_key.path[1], event.partition), event.materialization)
    result = materialize(
        everything,
        instance=instance,
        resources=defs.resources,
        selection=AssetSelection.assets(key("sweep_report"), key("exported_model")),
    )
    assert result.success
    events.update({(e.asset_key.path[1], None): e.materialization for e in result.get_asset_materialization_events()})
    return events


def test_a_sweep_trains_each_variant_compares_them_and_exports_the_best_then_trains_only_a_new_value(project):
    recipes, artifacts = project
    write_films_recipe(recipes, **sweep_of([1e-5, 1e-2]))
    with instance_for_test() as instance:
        sweep_and_add_a_value(recipes, artifacts, instance)


def sweep_and_add_a_value(recipes: Path, artifacts: Path, instance: DagsterInstance):
    events = materialize_sweep(recipes, artifacts, instance)
    slow, fast = "lr=1e-05", "lr=0.01"
    assert {p for (asset, p) in events if asset == "finetuned_model"} == {slow, fast}
    assert events[("raw_dataset", None)] and ("raw_dataset", slow) not in events, "the data is not partitioned"
    assert events[("clean_dataset", None)].metadata["cache_hit"].value is False
    f1 = {name: events[("evaluation_report", name)].metadata["f1_macro"].value for name in (slow, fast)}
    assert f1[slow] != f1[fast], "the two learning rates give different models"
    best = max(f1, key=f1.get)
    sweep = events[("sweep_report", None)].metadata
    assert sweep["chosen_variant"].value == best and sweep["variants_evaluated"].value == 2
    table = table_rows(sweep["comparison"].value)
    assert list(table) == [best, min(f1, key=f1.get), "base model (untuned)"], "ranked, the best first"
    for name in (slow, fast):
        row, trained = table[name], events[("finetuned_model", name)].metadata
        assert (
            row["f1_macro"] == f"{f1[name]:.4f}"
            and row["accuracy"] == f"{events[('evaluation_report', name)].metadata['accuracy'].value:.4f}"
        )
        assert row["train seconds"] == f"{trained['train_seconds'].value:.1f}"
        assert row["trainable parameters"] == f"{trained['trainable_parameters'].value:,}"
        assert float(row["peak memory (MiB)"].replace(",", "")) == pytest.approx(trained["peak_rss_mib"].value, abs=1)
    assert table[best]["status"] == "chosen: goes to the promotion gate"
    assert sweep["comparison_plot"].value.startswith("![sweep comparison](data:image/png;base64,")
    export = events[("exported_model", None)].metadata
    assert export["decision"].value == f"promoted (first export) (sweep variant {best})"
    assert export["variant"].value == best
    exported = Path(export["path"].value)
    lineage = json.loads((exported / "lineage.json").read_text())
    assert (
        lineage["finetuned_model"]["fingerprint"] == events[("finetuned_model", best)].metadata["fingerprint"].value
    ), "the export is the chosen variant's model"
    trained = json.loads((Path(lineage["finetuned_model"]["path"]) / "recipe.json").read_text())
    assert trained["variant"] == best and trained["training"]["learning_rate"] == float(best.split("=")[1])
    history = (artifacts / "films" / "exported_model" / "evaluation_history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["decision"] == export["decision"].value
    ref = json.loads((artifacts / "refs" / "films" / "finetuned_model" / f"{slow}.json").read_text())
    assert ref["fingerprint"] == events[("finetuned_model", slow)].metadata["fingerprint"].value
    shown = show(recipes, artifacts)
    assert f"chosen variant:    {best} (best f1_macro of 2 evaluated; not evaluated yet: none)" in shown
    assert f"gate decision:     promoted (first export) (sweep variant {best})" in shown

    # A third value: listed as not evaluated until its partition runs; then only it trains.
    write_films_recipe(recipes, **sweep_of([1e-5, 1e-2, 3e-3]))
    pending = materialize_sweep(recipes, artifacts, instance, variants_to_run=[])[("sweep_report", None)].metadata
    assert pending["variants_not_evaluated"].value == "lr=0.003" and pending["chosen_variant"].value == best
    assert (
        table_rows(pending["comparison"].value)["lr=0.003"]["status"] == "not evaluated yet: materialize its partition"
    )
    again = materialize_sweep(recipes, artifacts, instance)
    hits = {name: again[("finetuned_model", name)].metadata["cache_hit"].value for name in (slow, fast, "lr=0.003")}
    assert hits == {slow: True, fast: True, "lr=0.003": False}
    assert again[("sweep_report", None)].metadata["variants_evaluated"].value == 3
    assert table_rows(again[("sweep_report", None)].metadata["comparison"].value)["lr=0.003"]["status"] in (
        "evaluated",
        "chosen: goes to the promotion gate",
    )
    assert len(list((artifacts / "films" / "finetuned_model").glob("*/artifact.json"))) == 3
    assert_the_ui_shows_the_variants_and_the_comparison(recipes, artifacts, instance, [slow, fast, "lr=0.003"])


def show(recipes: Path, artifacts: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "finetune_assets.show", "films"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "FINETUNE_RECIPES": str(recipes),
            "FINETUNE_ARTIFACTS_DIR": str(artifacts),
            "PYTHONPATH": os.pathsep.join(sys.path),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


UI_QUERY = """
query ($model: AssetKeyInput!, $sweep: AssetKeyInput!) {
  model: assetNodeOrError(assetKey: $model) {
    ... on AssetNode { partitionKeys assetPartitionStatuses {
      ... on DefaultPartitionStatuses { materializedPartitions failedPartitions unmaterializedPartitions } } }
  }
  sweep: assetOrError(assetKey: $sweep) {
    ... on Asset { assetMaterializations(limit: 1) { metadataEntries {
      label ... on MarkdownMetadataEntry { mdStr } } } }
  }
}"""


def assert_the_ui_shows_the_variants_and_the_comparison(recipes: Path, artifacts: Path, instance, names: list[str]):
    """What the UI's pages read, through the webserver's GraphQL API on a code location loaded like
    `dagster dev` loads one: finetuned_model's partitions with their status, the sweep report's table."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    location = recipes.parent / "location.py"
    location.write_text(
        "from finetune_assets.defs import build_definitions\n"
        f"defs = build_definitions([{str(recipes)!r}], {str(artifacts)!r})\n"
    )
    with define_out_of_process_context(str(location), None, instance) as context:
        found = execute_dagster_graphql(
            context,
            UI_QUERY,
            {"model": {"path": ["films", "finetuned_model"]}, "sweep": {"path": ["films", "sweep_report"]}},
        ).data
    assert found["model"]["partitionKeys"] == names
    statuses = found["model"]["assetPartitionStatuses"]
    assert sorted(statuses["materializedPartitions"]) == sorted(names) and not statuses["failedPartitions"]
    entries = {
        entry["label"]: entry.get("mdStr") for entry in found["sweep"]["assetMaterializations"][0]["metadataEntries"]
    }
    assert set(table_rows(entries["comparison"])) == {*names, "base model (untuned)"}
    assert entries["comparison_plot"].startswith("![sweep comparison](data:image/png;base64,")


def test_a_variant_failing_a_quality_gate_is_shown_never_chosen_and_does_not_stop_the_others(project):
    recipes, artifacts = project
    write_films_recipe(recipes, **sweep_of([1e-12, 1e-2]), checks={})  # the gates at their defaults
    specs = build_definitions([recipes], str(artifacts)).resolve_assets_def(key("evaluation_report")).check_specs
    gates = {spec.name: spec for spec in specs if "Severity ERROR" in spec.description}
    assert set(gates) == {"beats_base_model", "beats_majority_class"}
    assert not any(spec.blocking for spec in gates.values()) and all(
        "never chosen" in spec.description for spec in gates.values()
    ), "a bad variant cannot stop the backfill"
    with instance_for_test() as instance:
        events = materialize_sweep(recipes, artifacts, instance)  # every variant's run succeeds
    sweep = events[("sweep_report", None)].metadata
    table = table_rows(sweep["comparison"].value)
    assert table["lr=1e-12"]["status"].startswith("failed beats_base_model"), table["lr=1e-12"]
    assert table["lr=1e-12"]["status"].endswith("never chosen")
    assert sweep["chosen_variant"].value == "lr=0.01" and table["lr=0.01"]["status"].startswith("chosen")
    assert events[("exported_model", None)].metadata["variant"].value == "lr=0.01"


def test_the_sweep_report_refuses_when_no_variant_is_evaluated_yet(project):
    recipes, artifacts = project
    write_films_recipe(recipes, **sweep_of([3e-3, 1e-3]))
    defs = build_definitions([recipes], str(artifacts))
    empty = materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        raise_on_error=False,
        selection=AssetSelection.assets(key("tokenized_splits")).upstream()
        | AssetSelection.assets(key("sweep_report")),
    )
    assert not empty.success
    failure = empty.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert (
        "films: no variant of the sweep has been evaluated on the current splits yet; materialize the "
        "partitions of films/evaluation_report" in failure
    )


def test_a_recipe_without_a_sweep_has_no_partitions_and_no_sweep_report(project):
    recipes, artifacts = project
    defs = build_definitions([recipes], str(artifacts))
    keys = {a.key for a in defs.assets}
    assert key("sweep_report") not in keys
    assert all(a.partitions_def is None for a in defs.assets)
    export = defs.resolve_assets_def(key("exported_model"))
    assert set(export.asset_deps[key("exported_model")]) == {key("finetuned_model"), key("evaluation_report")}


def test_the_sweeps_partitions_and_dependencies_in_dagster(project):
    recipes, artifacts = project
    write_films_recipe(recipes, **sweep_of([3e-3, 1e-3]))
    defs = build_definitions([recipes], str(artifacts))
    graph = defs.resolve_asset_graph()
    for name in ("finetuned_model", "evaluation_report"):
        assert graph.get(key(name)).partitions_def.get_partition_keys() == ["lr=0.003", "lr=0.001"]
    for name in ("raw_dataset", "clean_dataset", "tokenized_splits", "sweep_report", "exported_model"):
        assert graph.get(key(name)).partitions_def is None
    assert graph.get(key("sweep_report")).parent_keys == {key("tokenized_splits"), key("evaluation_report")}
    # So a backfill of the group runs the sweep report once, after every variant's evaluation.
    assert isinstance(graph.get_partition_mapping(key("sweep_report"), key("evaluation_report")), AllPartitionMapping)
    assert graph.get(key("exported_model")).parent_keys == {key("sweep_report")}
    assert graph.get(key("finetuned_model")).pools == {"training"}, "one training per device, variants too"


def test_the_documented_command_lists_the_variants_for_a_shell_loop(project):
    recipes, _ = project
    write_films_recipe(recipes, **sweep_of([3e-3, 1e-3]))
    done = subprocess.run(
        [sys.executable, "-m", "finetune_assets.show", "films", "--variants"],
        capture_output=True,
        text=True,
        env={**os.environ, "FINETUNE_RECIPES": str(recipes), "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["lr=0.003", "lr=0.001"]


def test_the_schedule_and_the_new_data_sensor_request_one_run_per_variant(project):
    recipes, _ = project
    write_films_recipe(recipes, **sweep_of([3e-3, 1e-3]), schedule={"cron": "0 3 * * 1"})
    defs = build_definitions([recipes])
    repository = defs.get_repository_def()  # a tick resolves partition keys against it
    scheduled = (
        defs.resolve_schedule_def("films_schedule")
        .evaluate_tick(build_schedule_context(repository_def=repository))
        .run_requests
    )
    sensed = (
        defs.resolve_sensor_def("films_new_data")
        .evaluate_tick(build_sensor_context(repository_def=repository))
        .run_requests
    )
    for requests in (scheduled, sensed):
        assert [request.partition_key for request in requests] == ["lr=0.003", "lr=0.001"]
        assert len({request.run_key for request in requests}) == 2, "distinct run keys, or Dagster drops one"
