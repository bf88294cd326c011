"""finetune_assets in other people's Dagster projects: the ``finetune_assets.FineTune`` component in
a fresh ``dg`` project, this project's own ``defs/`` folder, ``workspace.yaml`` and ``-m
finetune_assets``.

The fresh project is laid out by hand the way ``create-dagster project`` lays it out (that command
is not installed here and would run ``uv sync``, which needs the network): a ``src/`` package with
a ``definitions.py`` that loads its ``defs/`` folder, and ``[tool.dg]`` in its pyproject. Its
``.venv`` is the shared virtual environment, where finetune_assets is installed in editable mode
from another checkout; the entry point that lists the component is read from this checkout's
pyproject.toml into a metadata folder put first on ``PYTHONPATH``, as ``pip install`` would
register it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml
from dagster_dev import free_port, stop, wait_until_serving

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parents[1]
TYPE = "finetune_assets.FineTune"
TINY = {
    "task": "classification",
    "base_model": "some-org/some-model",
    "dataset": {"source": "rows.csv", "labels": ["negative", "positive"]},
    "splits": {"validation": 0.2, "test": 0.2},
}


@pytest.fixture(scope="module")
def entry_point(tmp_path_factory) -> Path:
    """A folder with finetune_assets' distribution metadata as this checkout declares it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = tmp_path_factory.mktemp("metadata") / f"finetune_assets-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: finetune_assets\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
            for group, points in project["entry-points"].items()
        )
    )
    return info.parent


@pytest.fixture
def project(tmp_path, entry_point) -> Path:
    """A fresh dg project, ``my_project``, using the shared virtual environment."""
    root = tmp_path / "my_project"
    package = root / "src" / "my_project"
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "my_project"\nversion = "0.1.0"\ndependencies = ["finetune_assets"]\n\n'
        '[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "my_project"\n'
        'registry_modules = ["my_project.components.*"]\n'
    )
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        "from pathlib import Path\n\nfrom dagster import definitions, load_from_defs_folder\n\n\n"
        "@definitions\ndef defs():\n    return load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (root / ".venv").symlink_to(VENV)
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # DAGSTER_HOME
    return root


def run(command: list[str], cwd: Path, entry_point: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    path = [str(entry_point)] if entry_point else []
    environment = {
        **os.environ,
        "VIRTUAL_ENV": str(VENV),
        "DAGSTER_HOME": str(cwd.parent),
        "PYTHONPATH": os.pathsep.join([*path, str(cwd / "src"), str(REPO)]),
        **env,
    }
    environment.pop("FINETUNE_RECIPES", None)
    return subprocess.run(
        [str(VENV / "bin" / command[0]), *command[1:]], cwd=cwd, capture_output=True, text=True, env=environment
    )


def listed(project: Path, entry_point: Path) -> dict:
    """``dg list defs --json``: the project's definitions by kind."""
    done = run(["dg", "list", "defs", "--json"], project, entry_point)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout)


def listed_assets(project: Path, entry_point: Path) -> set[str]:
    return {asset["asset_key"] for asset in listed(project, entry_point)["assets"]}


def write_component(folder: Path, attributes: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rows.csv").write_text(
        "text,label\n" + "".join(f"row number {i},{'positive' if i % 2 else 'negative'}\n" for i in range(20))
    )
    path = folder / "defs.yaml"
    path.write_text(yaml.safe_dump({"type": TYPE, "attributes": attributes}, sort_keys=False))
    return path


# --- a user's own dg project --------------------------------------------------------------------


def test_dg_lists_the_component_type(project, entry_point):
    done = run(["dg", "list", "components", "--json"], project, entry_point)
    assert done.returncode == 0, done.stderr
    listed = {item["key"]: item["summary"] for item in json.loads(done.stdout)["items"]}
    assert TYPE in listed and "fine-tuning recipe" in listed[TYPE]


def test_dg_scaffold_defs_writes_a_recipe_that_loads_as_an_asset_group(project, entry_point):
    done = run(["dg", "scaffold", "defs", TYPE, "my_model"], project, entry_point)
    assert done.returncode == 0, done.stdout + done.stderr
    written = yaml.safe_load((project / "src" / "my_project" / "defs" / "my_model" / "defs.yaml").read_text())
    assert written["type"] == TYPE and written["attributes"]["task"] == "classification"
    write_component(project / "src" / "my_project" / "defs" / "tiny", TINY)  # a second one shares the resources
    found = listed(project, entry_point)
    assert {
        f"{recipe}/{stage}"
        for recipe in ("my_model", "tiny")
        for stage in ("raw_dataset", "tokenized_splits", "exported_model")
    } <= {a["asset_key"] for a in found["assets"]}
    assert {"my_model_job", "tiny_job"} <= {job["name"] for job in found["jobs"]}


def test_a_relative_dataset_path_is_relative_to_the_defs_yaml(project, entry_point):
    folder = project / "src" / "my_project" / "defs" / "tiny"
    write_component(folder, TINY)
    done = run(
        ["dg", "launch", "--assets", "tiny/raw_dataset"],
        project,
        entry_point,
        FINETUNE_ARTIFACTS_DIR=str(project.parent / "artifacts"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list((project.parent / "artifacts" / "tiny" / "raw_dataset").glob("*/rows.parquet"))


def test_attributes_name_the_asset_group(project, entry_point):
    write_component(project / "src" / "my_project" / "defs" / "folder_name", {"name": "chosen_name", **TINY})
    keys = listed_assets(project, entry_point)
    assert "chosen_name/raw_dataset" in keys and not any(key.startswith("folder_name/") for key in keys)


def test_env_templates_in_the_attributes_are_rendered(project, entry_point):
    write_component(project / "src" / "my_project" / "defs" / "tiny", {**TINY, "base_model": "{{ env.BASE_MODEL }}"})
    done = run(["dg", "list", "defs", "--json"], project, entry_point, BASE_MODEL="x-org/x-model")
    assert done.returncode == 0, done.stderr[-3000:]
    training = next(a for a in json.loads(done.stdout)["assets"] if a["asset_key"] == "tiny/finetuned_model")
    assert "x-org/x-model" in training["description"] and "{{" not in training["description"]


def test_dg_check_yaml_names_a_bad_key(project, entry_point):
    # dg check yaml takes component folders: given a defs.yaml file itself, it checks nothing
    good = write_component(project / "src" / "my_project" / "defs" / "good", TINY).parent
    done = run(["dg", "check", "yaml", str(good)], project, entry_point)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = write_component(project / "src" / "my_project" / "defs" / "bad", {**TINY, "training": {"epocs": 3}}).parent
    done = run(["dg", "check", "yaml", str(bad)], project, entry_point)
    assert done.returncode == 1
    assert "epocs" in done.stdout and "training" in done.stdout, done.stdout


def test_dg_check_defs_names_a_bad_key_in_every_component(project, entry_point):
    """dg 1.13's yaml check keeps one defs.yaml per component type (here the good one, found last);
    loading the definitions still names the bad key of the other."""
    bad = write_component(project / "src" / "my_project" / "defs" / "a_bad", {**TINY, "training": {"epocs": 3}})
    write_component(project / "src" / "my_project" / "defs" / "b_good", TINY)
    done = run(["dg", "check", "defs"], project, entry_point)
    assert done.returncode != 0
    assert f"attributes.training.epocs at {bad}" in done.stdout + done.stderr


def test_loading_names_the_file_and_key_of_a_rule_the_schema_cannot_express(project, entry_point):
    bad = write_component(
        project / "src" / "my_project" / "defs" / "tiny", {**TINY, "splits": {"validation": 0.6, "test": 0.5}}
    )
    done = run(["dg", "check", "defs"], project, entry_point)
    assert done.returncode != 0
    assert str(bad) in done.stdout + done.stderr and "validation + test must be below 1" in done.stdout + done.stderr


# --- this project's own defs/ folder ------------------------------------------------------------


def test_dg_scaffold_defs_in_this_project_lands_where_it_is_loaded(tmp_path, entry_point):
    """In a copy of this checkout: a component scaffolded into finetune_assets/defs/ is served
    beside the recipe files' groups."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    (copy / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    subprocess.run(["cp", "-r", str(REPO / "finetune_assets"), str(copy)], check=True)
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(entry_point), str(copy)]),
        "DAGSTER_HOME": str(tmp_path),
    }
    environment.pop("FINETUNE_RECIPES", None)
    scaffold = subprocess.run(
        [str(VENV / "bin" / "dg"), "scaffold", "defs", TYPE, "my_model"],
        cwd=copy,
        capture_output=True,
        text=True,
        env=environment,
    )
    assert scaffold.returncode == 0, scaffold.stdout + scaffold.stderr
    assert (copy / "finetune_assets" / "defs" / "my_model" / "defs.yaml").is_file()
    listed = subprocess.run(
        [str(VENV / "bin" / "dg"), "list", "defs", "--json"], cwd=copy, capture_output=True, text=True, env=environment
    )
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    keys = {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}
    assert {"my_model/raw_dataset", "tweet_sentiment/raw_dataset"} <= keys
    # installed from a wheel there is no pyproject.toml: the defs folder is found from the module
    (copy / "pyproject.toml").unlink()
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "from finetune_assets.definitions import defs; print(sorted("
            "k.to_user_string() for k in defs().resolve_asset_graph().get_all_asset_keys()))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "my_model/raw_dataset" in loaded.stdout and "tweet_sentiment/raw_dataset" in loaded.stdout


# --- workspace.yaml and -m finetune_assets ------------------------------------------------------


def dagster(*arguments: str, home: Path) -> str:
    environment = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    environment.pop("FINETUNE_RECIPES", None)
    done = subprocess.run(
        [str(VENV / "bin" / "dagster"), *arguments], cwd=REPO, capture_output=True, text=True, env=environment
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_workspace_yaml_loads_the_code_location(tmp_path):
    output = dagster("definitions", "validate", "-w", "workspace.yaml", home=tmp_path)
    assert "Validation successful for code location finetune_assets.definitions" in output


@pytest.fixture(scope="module")
def module_asset_keys(tmp_path_factory) -> list[str]:
    """``dagster asset list -m finetune_assets.definitions``: the asset keys, listed once."""
    return dagster("asset", "list", "-m", "finetune_assets.definitions", home=tmp_path_factory.mktemp("home")).split()


def test_dash_m_finetune_assets_finds_the_same_definitions(tmp_path, module_asset_keys):
    package = dagster("asset", "list", "-m", "finetune_assets", home=tmp_path).split()
    assert "tweet_sentiment/exported_model" in package
    assert package == module_asset_keys


def test_dagster_dev_with_workspace_yaml_serves_every_group(tmp_path, module_asset_keys):
    home = tmp_path / "home"
    subprocess.run(
        ["bash", str(REPO / "scripts" / "init_dagster_home.sh"), str(home)],
        check=True,
        env={**os.environ, "DAGSTER": str(VENV / "bin" / "dagster")},
    )
    url, log = f"http://127.0.0.1:{free_port()}", tmp_path / "dagster_dev.log"
    environment = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    environment.pop("FINETUNE_RECIPES", None)
    with open(log, "w") as output:
        server = subprocess.Popen(
            [
                str(VENV / "bin" / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                url.rsplit(":", 1)[1],
            ],
            cwd=REPO,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_serving(server, url, log)
        query = json.dumps({"query": "{ assetNodes { groupName repository { location { name } } } }"}).encode()
        request = urllib.request.Request(f"{url}/graphql", data=query, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as answer:
            nodes = json.load(answer)["data"]["assetNodes"]
    finally:
        stop(server)
    assert {node["groupName"] for node in nodes} == {key.split("/")[0] for key in module_asset_keys}
    # the name plain `dagster dev` gives it (pyproject's [tool.dagster]), which UI links carry
    assert {node["repository"]["location"]["name"] for node in nodes} == {"finetune_assets.definitions"}
