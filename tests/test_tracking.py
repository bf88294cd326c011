"""``training.report_to``: what the recipe may say, that it never changes a fingerprint, and that a
tracker that is not installed stops the run before any data is read (the TensorBoard event files
themselves: test_run_output.py, which trains with report_to: tensorboard)."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import write_films_recipe
from dagster import DagsterInstance, materialize

from finetune_assets.defs import build_definitions
from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.chain import CHAIN


def test_report_to_takes_a_list_one_name_or_none(make_recipe, tmp_path):
    assert make_recipe("a", training={"report_to": ["tensorboard", "mlflow"]}).training.report_to == [
        "tensorboard",
        "mlflow",
    ]
    assert make_recipe("b", training={"report_to": "tensorboard"}).training.report_to == ["tensorboard"]
    assert make_recipe("c", training={"report_to": "none"}).training.report_to == []
    assert make_recipe("d").training.report_to == []
    with pytest.raises(RecipeError, match=r"training.report_to.0: Input should be 'tensorboard', 'mlflow' or 'wandb'"):
        make_recipe("e", training={"report_to": ["tensorbord"]})


def test_where_figures_are_reported_changes_no_fingerprint_or_code_version(make_recipe):
    plain, tracked = make_recipe("plain"), make_recipe("tracked", training={"report_to": ["wandb"]})
    upstream = [ArtifactRef("splits", "abc")]
    for stage in ("finetuned_model", "evaluation_report"):
        assert CHAIN[stage].fingerprint(plain, upstream) == CHAIN[stage].fingerprint(tracked, upstream)
        assert CHAIN[stage].version(plain) == CHAIN[stage].version(tracked)


def test_a_tracker_that_is_not_installed_stops_raw_dataset_naming_package_and_setting(films_project):
    recipes, artifacts = films_project
    pd.DataFrame({"review": ["good film", "bad film"] * 20, "sentiment": ["positive", "negative"] * 20}).to_csv(
        recipes / "data" / "reviews.csv", index=False
    )
    # wandb is in no extra of the project (mlflow is: the publishing extra), so it is absent here and in CI
    write_films_recipe(recipes, training={"max_length": 32, "report_to": ["wandb"]})
    defs = build_definitions([recipes], str(artifacts))
    result = materialize(
        [*defs.assets],
        resources=defs.resources,
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
        selection="films/raw_dataset",
    )
    assert not result.success
    message = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "films.yaml: training.report_to: wandb needs the 'wandb' package" in message
    assert "pip install wandb" in message
    assert not list(artifacts.glob("films/raw_dataset/*/rows.parquet")), "nothing was read or written"


def test_the_training_process_refuses_a_missing_tracker_before_anything_else(make_recipe, tmp_path, caplog):
    from finetune_assets.training.run import EXIT_BAD_INPUT, main

    recipe = make_recipe("tracked", training={"report_to": "wandb"})
    code = main(
        ["--recipe", str(recipe.source_file), "--splits", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    )
    assert code == EXIT_BAD_INPUT
    assert "training.report_to: wandb needs the 'wandb' package" in caplog.text
    assert not (tmp_path / "out").exists()
