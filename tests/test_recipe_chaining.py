"""``base_model: recipe:<name>``: a recipe that starts from another recipe's champion. The edge in the
asset graph, the champion pinned and trained from, its fingerprint in the fingerprints (a new champion
marks the chained assets stale and retrains them; an unchanged one is a cache hit), and the errors:
no champion yet, the recipe itself, an unknown recipe, a cycle. Real runs on the tiny BERT and the
tiny Llama, one Dagster instance per project so that staleness is Dagster's own verdict."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import yaml
from conftest import reviews, write_films_recipe
from dagster import AssetKey, AssetSelection, DagsterInstance, evaluate_automation_conditions, materialize
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver
from test_merge_check import write_project

from finetune_assets.defs import build_definitions
from finetune_assets.errors import RecipeError, SourceError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.promotion import base_champion, champion
from finetune_assets.recipes import load_recipe, scan

FILMS_EXPORT = AssetKey(["films", "exported_model"])
STAGES = ("raw_dataset", "clean_dataset", "tokenized_splits", "finetuned_model", "evaluation_report", "exported_model")
PROMOTION = {"min_test_rows": 10, "allow_warnings": True}  # an untrained first champion fails loss_decreased (WARN)
UNTRAINED = {"max_length": 32, "learning_rate": 1e-9, "epochs": 1}  # learns nothing: a first champion to beat
TRAINED = {"max_length": 32, "learning_rate": 1e-2, "epochs": 4}  # learns the sentiment words


@pytest.fixture
def project(films_project):
    """films (the tiny BERT) and follow, which starts from films' champion; the same rows for both,
    so follow's untuned base is scored on the rows films' champion was scored on."""
    recipes, artifacts = films_project
    reviews(seed=1).to_csv(recipes / "data" / "reviews.csv", index=False)
    write_films_recipe(recipes, training=UNTRAINED, promotion=PROMOTION)
    write_films_recipe(
        recipes, "follow", base_model="recipe:films", automation={"data": "eager", "retrain": {"cron": "0 3 * * 1"}}
    )
    return recipes, artifacts


class Project:
    """The recipes' Definitions on one instance: runs of some groups, and Dagster's stale status."""

    def __init__(self, recipes: Path, artifacts: Path):
        self.recipes, self.artifacts = recipes, artifacts
        self.instance = DagsterInstance.ephemeral()

    def run(self, *groups: str, success: bool = True):
        defs = build_definitions([self.recipes], str(self.artifacts))
        result = materialize(
            [*defs.assets, *defs.asset_checks],
            selection=AssetSelection.groups(*groups),
            resources=defs.resources,
            instance=self.instance,
            raise_on_error=False,
        )
        assert result.success == success
        return result, {
            tuple(e.asset_key.path): e.materialization.metadata for e in result.get_asset_materialization_events()
        }

    def stale(self, group: str) -> set[str]:
        defs = build_definitions([self.recipes], str(self.artifacts))
        resolver = get_stale_status_resolver(self.instance, defs.assets)
        return {stage for stage in STAGES if resolver.get_status(AssetKey([group, stage])) == StaleStatus.STALE}

    def champion(self, recipe: str) -> dict:
        return json.loads((self.artifacts / recipe / "exported_model" / "champion.json").read_text())


def cache_hits(metadata: dict, group: str) -> dict[str, bool]:
    return {stage: metadata[(group, stage)]["cache_hit"].value for stage in STAGES}


def test_the_first_stage_that_uses_the_base_depends_on_the_champions_asset(project):
    recipes, _ = project
    defs = build_definitions([recipes])
    graph = defs.resolve_asset_graph()
    followers = {key for key in graph.get_all_asset_keys() if FILMS_EXPORT in graph.get(key).parent_keys}
    assert followers == {AssetKey(["follow", "tokenized_splits"])}
    assert FILMS_EXPORT in defs.resolve_assets_def(AssetKey(["follow", "tokenized_splits"])).dependency_keys
    assert graph.get(AssetKey(["follow", "tokenized_splits"])).automation_condition.get_label() == "eager"
    assert "finetune_assets/network" not in graph.get(AssetKey(["follow", "finetuned_model"])).tags
    # weekly's cron does not wait for films' export: only weekly's own upstream assets count
    write_films_recipe(recipes, "weekly", base_model="recipe:films", automation={"retrain": {"cron": "0 3 * * 1"}})
    graph = build_definitions([recipes]).resolve_asset_graph()
    on_cron = graph.get(AssetKey(["weekly", "tokenized_splits"])).automation_condition
    assert on_cron.get_label() == "on_cron(0 3 * * 1, UTC)"
    since_cron = next(part for part in on_cron.operands if "all_deps_updated_since_cron" in (part.get_label() or ""))
    assert since_cron.ignore_selection.resolve(graph) == {FILMS_EXPORT}


def test_a_new_champion_marks_the_chained_recipe_stale_and_it_retrains_from_it(project):
    recipes, artifacts = project
    runs = Project(recipes, artifacts)
    _, first = runs.run("films", "follow")
    champion = runs.champion("films")
    pinned = first[("follow", "tokenized_splits")]["base_champion"].value
    assert pinned == f"films champion {champion['fingerprint']} ({champion['path']})"
    trained = Path(first[("follow", "finetuned_model")]["path"].value)
    assert json.loads((trained / "recipe.json").read_text())["base_champion"]["path"] == champion["path"]
    # follow's untuned base is films' champion: scored on the same test rows, the same figures
    assert (
        first[("follow", "evaluation_report")]["baseline_accuracy"].value
        == first[("films", "evaluation_report")]["accuracy"].value
    )
    card = (Path(first[("follow", "exported_model")]["path"].value) / "README.md").read_text()
    assert f"the champion `{champion['fingerprint']}` of recipe films" in card
    assert runs.stale("follow") == set()

    _, again = runs.run("films", "follow")  # the same champion: nothing new anywhere
    assert all(cache_hits(again, "follow").values())
    assert runs.stale("follow") == set()
    defs = build_definitions([recipes], str(artifacts))
    now = datetime.datetime.now(datetime.UTC)
    cursor = evaluate_automation_conditions(defs=defs, instance=runs.instance, evaluation_time=now).cursor

    write_films_recipe(recipes, training=TRAINED, promotion=PROMOTION)
    _, newer = runs.run("films")
    assert newer[("films", "exported_model")]["decision"].value.startswith("promoted")
    assert runs.champion("films")["fingerprint"] != champion["fingerprint"]
    # Dagster marks the direct follower stale; the assets after it as each gets a new data version
    assert runs.stale("follow") == {"tokenized_splits"}
    assert runs.stale("films") == set()
    requested = evaluate_automation_conditions(
        defs=defs, instance=runs.instance, cursor=cursor, evaluation_time=datetime.datetime.now(datetime.UTC)
    )
    follow = {stage for stage in STAGES if requested.get_num_requested(AssetKey(["follow", stage]))}
    assert follow == {"tokenized_splits"}, "data: eager follows the champion; training waits for its cron"

    _, retrained = runs.run("follow")
    assert cache_hits(retrained, "follow") == {
        "raw_dataset": True,
        "clean_dataset": True,
        "tokenized_splits": False,
        "finetuned_model": False,
        "evaluation_report": False,
        "exported_model": False,
    }
    assert runs.champion("films")["fingerprint"] in retrained[("follow", "finetuned_model")]["base_champion"].value
    assert runs.stale("follow") == set()


def test_without_a_champion_the_first_stage_that_uses_the_base_fails_naming_both_recipes(project):
    recipes, artifacts = project
    result, made = Project(recipes, artifacts).run("follow", success=False)
    assert set(made) == {("follow", "raw_dataset"), ("follow", "clean_dataset")}, "the data needs no base"
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "follow__tokenized_splits"
    message = failure.step_failure_data.error.to_string()
    assert "follow.yaml: base_model: recipe:films: recipe films has no champion yet" in message
    assert "Materialize films first" in message


def test_a_recipe_naming_itself_an_unknown_recipe_or_a_cycle_is_broken(project):
    recipes, _ = project
    write_films_recipe(recipes, "me", base_model="recipe:me")
    write_films_recipe(recipes, "lost", base_model="recipe:nowhere")
    write_films_recipe(recipes, "ping", base_model="recipe:pong")
    write_films_recipe(recipes, "pong", base_model="recipe:ping")
    write_films_recipe(recipes, "after", base_model="recipe:me")
    found = scan(recipes)
    assert sorted(recipe.name for recipe in found.recipes) == ["films", "follow"]
    errors = {path.stem: str(error) for path, error in found.broken}
    assert "me.yaml: invalid recipe" in errors["me"] and "recipe:me is this recipe itself" in errors["me"]
    assert "base_model" in errors["me"]
    assert errors["lost"].startswith(f"{recipes / 'lost.yaml'}: base_model: recipe:nowhere: no recipe named 'nowhere'")
    assert "in a cycle (ping -> pong -> ping)" in errors["ping"] and "(pong -> ping -> pong)" in errors["pong"]
    assert f"recipe:me: that recipe ({recipes / 'me.yaml'}) is broken" in errors["after"]
    keys = {
        key.to_user_string()
        for key in build_definitions([recipes], strict=False).resolve_asset_graph().get_all_asset_keys()
    }
    assert {"broken_recipes/lost", "broken_recipes/ping", "follow/tokenized_splits"} <= keys
    with pytest.raises(RecipeError, match="no recipe named 'nowhere'"):
        build_definitions([recipes], strict=True)
    with pytest.raises(RecipeError, match=r"base_model.*recipe:<name> names a recipe by its file name"):
        load_recipe(write_films_recipe(recipes, "odd", base_model="recipe:my-sft"))
    with pytest.raises(RecipeError, match="key 'base_champion' is not allowed"):
        load_recipe(
            write_films_recipe(recipes, "sneaky", base_champion={"recipe": "films", "path": "/", "fingerprint": "x"})
        )


def test_an_instruction_recipe_trains_its_adapter_on_the_merged_champion(tmp_path, tiny_llama):
    write_project(tmp_path, tiny_llama, max_new_tokens=4)  # sums: LoRA on the tiny Llama
    sums = yaml.safe_load((tmp_path / "recipes" / "sums.yaml").read_text())
    (tmp_path / "recipes" / "chat.yaml").write_text(yaml.safe_dump({**sums, "base_model": "recipe:sums"}))
    runs = Project(tmp_path / "recipes", tmp_path / "artifacts")
    _, made = runs.run("sums", "chat")
    champion = runs.champion("sums")
    adapter = Path(made[("chat", "finetuned_model")]["path"].value) / "adapter_config.json"
    assert json.loads(adapter.read_text())["base_model_name_or_path"] == champion["path"]
    base = made[("chat", "evaluation_report")]["baseline_perplexity"].value
    assert base == pytest.approx(made[("sums", "evaluation_report")]["perplexity"].value, rel=1e-2)
    assert made[("chat", "exported_model")]["merge_check_same_greedy_answers"].value == "4 of 4"


def test_a_lineage_keeps_the_champion_it_started_from_when_another_is_promoted_meanwhile(project):
    """No model is loaded: the pinning alone, on champion folders written the way the gate writes them."""
    recipes, artifacts = project
    follow = load_recipe(recipes / "follow.yaml")
    exports = champion.exports_dir(artifacts, "films")
    first, newer = (exports / "aaaa", exports / "bbbb")
    for folder in (first, newer):
        folder.mkdir(parents=True)
    with champion.locked(exports):
        champion.write(exports, ArtifactRef(str(newer), "bbbb"))
    assert base_champion.pin(follow, artifacts, [], uses_base=False).base_champion is None, "the data needs no base"
    assert base_champion.pin(follow, artifacts, [], uses_base=True).base_champion.fingerprint == "bbbb"
    started = {"recipe": "films", "path": str(first), "fingerprint": "aaaa"}
    splits = ArtifactRef("splits", "s1", {base_champion.KEY: started})
    model = ArtifactRef("model", "m1", {}, {"tokenized_splits": {"path": "splits", "fingerprint": "s1", **splits.info}})
    for upstream in ([splits], [model]):  # finetuned_model reads its splits; exported_model its model's lineage
        assert base_champion.pin(follow, artifacts, upstream, uses_base=True).base_champion.fingerprint == "aaaa"
    first.rmdir()
    with pytest.raises(SourceError, match="the champion aaaa this lineage started from is gone"):
        base_champion.pin(follow, artifacts, [splits], uses_base=True)
