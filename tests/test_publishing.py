"""Publishing the champion: a real local MLflow server (two promotions, the alias, the tags, loading
the model back, rollback, a server that is down), and the Hugging Face Hub target up to the network
call (no Hub is reachable here: the upload itself is not tested)."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import pytest
from conftest import reviews, write_films_recipe
from dagster import DagsterInstance, materialize

from finetune_assets.defs import build_definitions
from finetune_assets.defs.resources import MlflowSettings
from finetune_assets.errors import PublishError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.chain import stages_of
from finetune_assets.pipeline.stage_names import EXPORTED_MODEL, PUBLISHED_MODEL, RAW_DATASET
from finetune_assets.promotion import champion as champion_store
from finetune_assets.publish import main as publish_cli
from finetune_assets.publishing import hub
from finetune_assets.publishing.mlflow_registry import MlflowRegistry, tracking_uri
from finetune_assets.publishing.targets import Champion, publish_everywhere
from finetune_assets.recipes import load_recipe
from finetune_assets.rollback import main as rollback_cli
from finetune_assets.tasks import get_task

WEAK = {"max_length": 32, "learning_rate": 1e-9, "epochs": 1}  # learns nothing: the first champion
STRONG = {"max_length": 32, "learning_rate": 1e-2, "epochs": 4}  # learns the six words: the second
PUBLISH = {"mlflow": {"model_name": "films"}}
# The WARN gates (loss_decreased on a model that learns nothing, no_overfitting) would block these
# promotions: the test is about publishing what the gate promotes, not about the gate.
PROMOTION = {"min_test_rows": 10, "allow_warnings": True}


class Log:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -e '.[mlflow]')")
    from finetune_assets.publishing.local_mlflow import LocalMlflowServer

    with LocalMlflowServer(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


def run(recipes: Path, artifacts: Path, uri: str):
    """Every asset and check of the recipes, the mlflow resource pointed at ``uri``; not raised."""
    defs = build_definitions([recipes], str(artifacts))
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        instance=DagsterInstance.ephemeral(),
        resources={**defs.resources, "mlflow": MlflowSettings(tracking_uri=uri)},
        raise_on_error=False,
    )
    meta = {e.asset_key.path[1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    return result, {asset: {key: value.value for key, value in values.items()} for asset, values in meta.items()}


def test_two_promotions_in_mlflow_then_a_server_down_then_rollbacks(mlflow_server, films_project, monkeypatch):
    from mlflow import MlflowClient

    recipes, artifacts = films_project
    reviews(0).to_csv(recipes / "data" / "reviews.csv", index=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a stopped server fails at once
    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    write_films_recipe(recipes, training=WEAK, publish=PUBLISH, promotion={**PROMOTION, "min_test_rows": 10_000})
    result, unpromoted = run(recipes, artifacts, mlflow_server.uri)  # no champion yet: nothing to publish
    assert result.success and unpromoted[EXPORTED_MODEL]["decision"].startswith("not promoted")
    assert unpromoted[PUBLISHED_MODEL]["published"].startswith("nothing") and not client.search_registered_models()
    write_films_recipe(recipes, training=WEAK, publish=PUBLISH, promotion=PROMOTION)
    result, first = run(recipes, artifacts, mlflow_server.uri)
    assert result.success and first[EXPORTED_MODEL]["decision"] == "promoted (first export)"
    assert first[PUBLISHED_MODEL]["mlflow_version"] == "1" and first[PUBLISHED_MODEL]["mlflow_created"]
    assert first[PUBLISHED_MODEL]["mlflow_uri"] == "models:/films@champion"
    write_films_recipe(recipes, training=STRONG, publish=PUBLISH, promotion=PROMOTION)
    result, second = run(recipes, artifacts, mlflow_server.uri)
    assert result.success and second[EXPORTED_MODEL]["decision"] == "promoted"
    assert second[PUBLISHED_MODEL]["mlflow_version"] == "2"
    assert client.get_model_version_by_alias("films", "champion").version == "2"
    champion = champion_store.read(artifacts / "films" / EXPORTED_MODEL)
    assert 'mlflow.pyfunc.load_model("models:/films@champion")' in (Path(champion.path) / "README.md").read_text()
    _assert_tags(client.get_model_version("films", "2").tags, champion, result.run_id, recipes)
    result, again = run(recipes, artifacts, mlflow_server.uri)  # unchanged: found, nothing new
    assert result.success and not again[PUBLISHED_MODEL]["mlflow_created"]
    assert len(client.search_model_versions("name = 'films'")) == 2
    _assert_loads_and_predicts(mlflow_server.uri, recipes, champion, monkeypatch)
    _assert_a_stopped_server_fails_the_step_only(mlflow_server, recipes, artifacts)
    mlflow_server.start()
    _assert_rollbacks(mlflow_server, client, recipes, artifacts, first, champion, monkeypatch)
    _assert_the_command_publishes_a_recipe_without_targets(mlflow_server, client, recipes, artifacts, champion)


def _assert_tags(tags: dict, champion: ArtifactRef, run_id: str, recipes: Path) -> None:
    """The version's tags: the run, every asset's fingerprint, the raw data's hash, code versions, metrics."""
    lineage = champion.lineage
    assert tags["finetune_assets.fingerprint"] == champion.fingerprint and tags["dagster_run_id"] == run_id
    assert tags["raw_content_hash"] == lineage[RAW_DATASET]["content_hash"]
    for name, entry in lineage.items():
        assert tags[f"fingerprint.{name}"] == entry["fingerprint"]
    assert tags[f"fingerprint.{EXPORTED_MODEL}"] == champion.fingerprint
    recipe = load_recipe(recipes / "films.yaml")
    assert {f"code_version.{stage.name}": stage.version(recipe) for stage in stages_of(recipe)}.items() <= tags.items()
    assert float(tags["metric.tuned.f1_macro"]) == pytest.approx(champion.info["metrics"]["f1_macro"], rel=1e-5)
    assert "metric.base.f1_macro" in tags and "metric.champion.f1_macro" in tags
    assert tags["decision"] == "promoted"


def _assert_loads_and_predicts(uri: str, recipes: Path, champion: ArtifactRef, monkeypatch) -> None:
    """``models:/films@champion`` loads and gives the evaluation report's predictions on its test rows."""
    import mlflow.pyfunc

    from finetune_assets.inference.evaluation import scored_rows

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model = mlflow.pyfunc.load_model("models:/films@champion")
    task = get_task(load_recipe(recipes / "films.yaml"))
    report = json.loads(Path(champion.lineage["evaluation_report"]["path"]).read_text())
    test = scored_rows(task.recipe, Path(champion.lineage["tokenized_splits"]["path"]))
    names = ["negative", "positive"]
    expected = [names[label] for label in report["tuned"]["details"]["predictions"]]
    with task.precision.inference():
        answers = [answer["label"] for answer in model.predict(list(test["text"]))]
    agree = sum(a == e for a, e in zip(answers, expected)) / len(expected)
    assert len(answers) == report["test_rows"] and agree >= 0.95, (agree, answers, expected)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")


def _assert_a_stopped_server_fails_the_step_only(server, recipes: Path, artifacts: Path) -> None:
    folder = artifacts / "films" / EXPORTED_MODEL
    before = ((folder / "champion.json").read_text(), os.readlink(folder / "current"))
    server.stop()
    result, meta = run(recipes, artifacts, server.uri)
    assert not result.success and PUBLISHED_MODEL not in meta
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error.to_string())
    assert f"mlflow at {server.uri}" in message and "local champion stays promoted" in message
    assert ((folder / "champion.json").read_text(), os.readlink(folder / "current")) == before


def _assert_rollbacks(server, client, recipes: Path, artifacts: Path, first: dict, second, monkeypatch) -> None:
    """The command back to version 1, the Dagster job forward to 2, a refusal for an export that is gone."""
    folder = artifacts / "films" / EXPORTED_MODEL
    common = ["--recipes", str(recipes), "--artifacts", str(artifacts), "--tracking-uri", server.uri]
    assert rollback_cli(["films", "--reason", "answers rudely", *common]) == 0
    assert client.get_model_version_by_alias("films", "champion").version == "1"
    assert (folder / "current").resolve() == Path(first[EXPORTED_MODEL]["path"]).resolve()
    row = champion_store.history(folder)[-1]
    assert row["decision"] == "rolled back: answers rudely" and row["by"] == getpass.getuser()
    assert row["registry_version"] == "1" and row["champion"] == second.fingerprint
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)  # the job's mlflow resource: the environment
    job = build_definitions([recipes], str(artifacts)).resolve_job_def("films_rollback")
    config = {"reason": "fixed upstream", "to": second.fingerprint}
    done = job.execute_in_process(run_config={"ops": {"films_rollback_champion": {"config": config}}})
    assert done.success and client.get_model_version_by_alias("films", "champion").version == "2"
    assert champion_store.read(folder).fingerprint == second.fingerprint
    assert f"dagster run {done.run_id}" in champion_store.history(folder)[-1]["by"]
    gone = Path(first[EXPORTED_MODEL]["path"])
    (gone / "artifact.json").unlink()
    assert rollback_cli(["films", "--to", gone.name, "--reason", "try", *common]) == 1
    assert champion_store.read(folder).fingerprint == second.fingerprint
    assert rollback_cli(["films", "--to", "0123456789abcdef", "--reason", "try", *common]) == 1


def _assert_the_command_publishes_a_recipe_without_targets(server, client, recipes, artifacts, champion) -> None:
    """The current champion of a recipe with no ``publish:`` sent to a registry by the command, once."""
    write_films_recipe(recipes, training=STRONG, promotion=PROMOTION)  # publish: gone
    paths = ["--recipes", str(recipes), "--artifacts", str(artifacts)]
    assert publish_cli(["films", *paths]) == 1  # no target named anywhere
    command = ["films", "--mlflow", server.uri, "--model-name", "films_later", *paths]
    assert publish_cli(command) == 0
    registered = client.get_model_version_by_alias("films_later", "champion")
    assert registered.version == "1" and registered.tags["finetune_assets.fingerprint"] == champion.fingerprint
    recipe = load_recipe(recipes / "films.yaml")
    versions = {stage.name: stage.version(recipe) for stage in stages_of(recipe)}
    assert registered.tags[f"code_version.{EXPORTED_MODEL}"] == versions[EXPORTED_MODEL]
    assert publish_cli(command) == 0  # found by its fingerprint: no second version
    assert len(client.search_model_versions("name = 'films_later'")) == 1


def test_the_publish_command_names_what_is_missing(films_project, capsys):
    recipes, artifacts = films_project
    paths = ["--recipes", str(recipes), "--artifacts", str(artifacts)]
    assert publish_cli(["films", *paths]) == 1
    assert "--mlflow [URI] or --hub REPO_ID" in capsys.readouterr().err
    assert publish_cli(["films", "--mlflow", "http://127.0.0.1:9", *paths]) == 1
    assert f"films: no champion to publish under {artifacts}" in capsys.readouterr().err
    assert publish_cli(["nofilms", "--mlflow", "http://127.0.0.1:9", *paths]) == 1
    assert "nofilms: no recipe of that name" in capsys.readouterr().err


def test_a_chat_export_in_mlflow_answers_as_its_own_pipeline(mlflow_server, tmp_path, tiny_llama, monkeypatch):
    """A chat export (tiny Llama, merged LoRA) registered and loaded back: the same greedy answers as
    the export's pipeline, with the recipe's decoding by default and ``params`` honoured."""
    import mlflow.pyfunc
    from test_merge_check import export, lora_checkpoint
    from transformers import pipeline

    recipe, checkpoint, _ = lora_checkpoint(tmp_path, tiny_llama, generation={"max_new_tokens": 6})
    folder = export(recipe, checkpoint, tmp_path / "exports" / "0123456789abcdef")
    champion = Champion(recipe, ArtifactRef(str(folder), "0123456789abcdef"), decision="promoted")
    [published] = publish_everywhere(champion, [MlflowRegistry(mlflow_server.uri, "tiny_chat")], Log())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    served = mlflow.pyfunc.load_model(published.uri)
    local = pipeline("text-generation", model=str(folder), device="cpu")
    conversations = [[{"role": "user", "content": "What is 2 plus 2?"}], [{"role": "user", "content": "Hi"}]]
    assert served.predict(conversations) == local(conversations)
    shorter = served.predict(conversations, params={"max_new_tokens": 2})
    assert shorter == local(conversations, max_new_tokens=2) != local(conversations)


def test_rollback_refusals_name_the_export(films_project, capsys):
    recipes, artifacts = films_project
    folder = artifacts / "films" / EXPORTED_MODEL
    folder.mkdir(parents=True)
    champion_store.history(folder, {"fingerprint": "aaaa", "decision": "promoted (first export)"})
    common = ["--recipes", str(recipes), "--artifacts", str(artifacts)]
    assert rollback_cli(["films", "--to", "aaaa", "--reason", "r", *common]) == 1
    assert f"its export folder {folder / 'aaaa'} is gone" in capsys.readouterr().err
    assert rollback_cli(["films", "--to", "bbbb", "--reason", "r", *common]) == 1
    said = capsys.readouterr().err
    assert "cannot roll films back to bbbb" in said and "earlier champions: aaaa" in said


def test_the_publishing_stage_follows_the_export_only_with_a_target(make_recipe):
    names = [stage.name for stage in stages_of(make_recipe())]
    assert PUBLISHED_MODEL not in names
    assert PUBLISHED_MODEL not in [stage.name for stage in stages_of(make_recipe(publish={"gguf": {}}))]
    for publish in ({"mlflow": {}}, {"hub": {"repo_id": "me/films"}}):
        assert [stage.name for stage in stages_of(make_recipe(publish=publish))] == [*names, PUBLISHED_MODEL]


def test_the_tracking_uri_comes_from_the_recipe_then_the_resource_then_the_environment(make_recipe, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    named = make_recipe(publish={"mlflow": {"tracking_uri": "http://from-recipe:5000"}})
    assert tracking_uri(named, "http://from-resource:5000") == "http://from-recipe:5000"
    plain = make_recipe(publish={"mlflow": {}})
    assert tracking_uri(plain, "http://from-resource:5000") == "http://from-resource:5000"
    assert tracking_uri(plain) == "http://from-env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(PublishError, match="MLFLOW_TRACKING_URI"):
        tracking_uri(plain)


def hub_champion(tmp_path: Path, make_recipe, **hub_spec) -> Champion:
    """A champion export folder as the pipeline leaves one, GGUF files and a Modelfile included."""
    folder = tmp_path / "exported_model" / "0123abcd"
    (folder / "adapter").mkdir(parents=True)
    for name in ("README.md", "model.safetensors", "tokenizer.json", "config.json", "model-q8_0.gguf", "Modelfile"):
        (folder / name).write_text(name)
    (folder / "adapter" / "adapter_model.safetensors").write_text("adapter")
    (folder / "artifact.json").write_text("{}")  # this machine's record: stays here
    (folder / ".staging-note").write_text("hidden")
    recipe = make_recipe("films", publish={"hub": {"repo_id": "me/films", **hub_spec}})
    return Champion(recipe, ArtifactRef(str(folder), "0123abcd"), decision="promoted")


def test_the_hub_commit_is_the_export_in_one_commit_named_by_fingerprint(tmp_path, make_recipe, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_NOT_A_REAL_TOKEN_1234")
    champion = hub_champion(tmp_path, make_recipe)
    uploaded = [op.path_in_repo for op in hub.operations(champion.folder)]
    assert uploaded == [
        "Modelfile",
        "README.md",
        "adapter/adapter_model.safetensors",
        "config.json",
        "model-q8_0.gguf",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert hub.commit_message(champion) == "films: champion 0123abcd (promoted)"
    spec = champion.recipe.publish.hub
    target = hub.HubRepo(spec.repo_id, spec.private)
    assert target.repo_settings() == {"repo_id": "me/films", "repo_type": "model", "private": True, "exist_ok": True}
    public = hub_champion(tmp_path / "public", make_recipe, private=False).recipe.publish.hub
    assert hub.HubRepo(public.repo_id, public.private).repo_settings()["private"] is False
    assert "hf_NOT_A_REAL" not in json.dumps([uploaded, hub.commit_message(champion), target.repo_settings()])


def test_the_model_card_says_where_each_target_has_the_champion(make_recipe):
    from finetune_assets.report.model_card import _published_where

    assert _published_where(make_recipe()) == ""
    said = _published_where(make_recipe("films", publish={"mlflow": {}, "hub": {"repo_id": "me/films"}}))
    assert 'mlflow.pyfunc.load_model("models:/films@champion")' in said and "`me/films` (private)" in said
    with_gguf = _published_where(make_recipe("chat", publish={"gguf": {}}))
    assert "ollama create chat -f Modelfile" in with_gguf
    assert "ollama" not in _published_where(make_recipe("quiet", publish={"gguf": {"ollama": False}}))


def test_a_hub_that_cannot_be_reached_fails_naming_the_repository_not_the_token(tmp_path, make_recipe, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_NOT_A_REAL_TOKEN_1234")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: set it here
    champion = hub_champion(tmp_path, make_recipe)
    with pytest.raises(PublishError) as raised:
        publish_everywhere(champion, [hub.HubRepo("me/films")], Log())
    assert "hub at me/films failed" in str(raised.value) and "hf_NOT_A_REAL" not in str(raised.value)


def test_the_publish_command_names_its_targets_over_the_recipes(make_recipe, monkeypatch):
    """``--mlflow`` without a URI keeps the recipe's server (else MLFLOW_TRACKING_URI); ``--hub`` is
    private unless ``--public``; without any flag the recipe's own ``publish:`` is used."""
    from finetune_assets.publish import _arguments, with_targets
    from finetune_assets.publishing.step import targets_of

    named = make_recipe("films", publish={"mlflow": {"tracking_uri": "http://recipe:5000", "model_name": "kept"}})
    mlflow = with_targets(named, _arguments(["films", "--mlflow"])).publish.mlflow
    assert (mlflow.tracking_uri, mlflow.model_name) == ("http://recipe:5000", "kept")
    given = with_targets(named, _arguments(["films", "--mlflow", "http://given:5000", "--model-name", "other"]))
    assert (given.publish.mlflow.tracking_uri, given.publish.mlflow.model_name) == ("http://given:5000", "other")
    assert with_targets(named, _arguments(["films"])).publish == named.publish
    plain = make_recipe("films")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    [registry] = targets_of(with_targets(plain, _arguments(["films", "--mlflow"])))
    assert (registry.address, registry.model_name) == ("http://from-env:5000", "films")
    hub_spec = with_targets(plain, _arguments(["films", "--hub", "me/films"])).publish.hub
    assert (hub_spec.repo_id, hub_spec.private) == ("me/films", True)
    assert with_targets(plain, _arguments(["films", "--hub", "me/films", "--public"])).publish.hub.private is False
