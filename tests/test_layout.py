"""The package's shape: nothing heavy at import, no import cycles, lazy Definitions that Dagster's
CLIs load, recipe folders outside the package, and a broken recipe that takes nothing else down."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune_assets.defs import build_definitions
from finetune_assets.defs.build import BROKEN_GROUP
from finetune_assets.errors import RecipeError
from finetune_assets.recipes import SHIPPED_DIR, recipe_folders

PACKAGE = Path(__file__).resolve().parents[1] / "finetune_assets"
VENV_BIN = Path(sys.executable).parent
GOOD = {
    "task": "classification",
    "base_model": "some-org/some-model",
    "dataset": {"source": "data.csv", "labels": ["negative", "positive"]},
}
BROKEN = {**GOOD, "training": {"epocs": 3}}


def python(code: str, cwd: Path | None = None, **env: str) -> str:
    """Run ``code`` in a fresh interpreter; return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env={**os.environ, **env}, check=True
    )
    return done.stdout.strip()


def write(folder: Path, name: str, recipe: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


GROUPS = (
    "from finetune_assets.definitions import defs; "
    "print(sorted({k.path[0] for k in defs().resolve_asset_graph().get_all_asset_keys()}))"
)


# --- nothing runs at import ---------------------------------------------------------------------

HEAVY = ("torch", "transformers", "datasets", "peft")


def test_importing_the_package_loads_nothing_heavy_and_builds_no_definitions():
    loaded = json.loads(
        python("import sys, finetune_assets, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    )
    assert not set(HEAVY + ("dagster",)) & set(loaded)


def test_reading_a_recipe_loads_no_task_family_and_no_pandera():
    loaded = json.loads(
        python(
            "import sys, json, finetune_assets.recipes; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('pandera', 'finetune_assets.tasks')))))"
        )
    )
    assert loaded == []


def test_the_entry_point_is_lazy_and_loading_it_imports_no_torch():
    report = json.loads(
        python(
            "import sys, json, finetune_assets.definitions as entry; "
            "built_at_import = type(entry.defs).__name__; "
            "defs = entry.defs(); "
            "print(json.dumps({'at_import': built_at_import, 'built': type(defs).__name__, "
            "'heavy': sorted({m.split('.')[0] for m in sys.modules} & set(" + repr(HEAVY) + "))}))"
        )
    )
    assert report == {"at_import": "LazyDefinitions", "built": "Definitions", "heavy": []}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The finetune_assets modules ``path`` imports at run time (``TYPE_CHECKING`` blocks excluded,
    imports inside functions included). ``from package import submodule`` is an edge to the
    submodule; ``from module import name`` an edge to the module."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", getattr(block.test, "attr", "")) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found & modules


def test_there_are_no_import_cycles():
    modules = {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in PACKAGE.rglob("*.py")
        if "metrics" not in path.parts
    }
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    # importing a.b.c imports the package a.b first, unless the importer lives inside a.b already
    for name in graph:
        graph[name] |= {
            parent
            for m in graph[name]
            for parent in _parents(m)
            if parent in modules and parent != name and not name.startswith(parent + ".")
        }
    assert "finetune_assets.pipeline.chain" in graph["finetune_assets.pipeline.runner"]  # the walk sees imports
    assert "finetune_assets.training.command" in graph["finetune_assets.pipeline.stages"]  # ...inside functions too
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_folder_says_what_it_holds():
    folders = [path.parent for path in PACKAGE.rglob("__init__.py")]
    assert len(folders) >= 10
    for folder in folders:
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"{folder}/__init__.py needs a docstring saying what lives there"


# --- Dagster's CLIs load the lazy entry point ---------------------------------------------------


def test_dg_check_defs_passes_on_the_shipped_recipes(tmp_path):
    done = subprocess.run(
        [str(VENV_BIN / "dg"), "check", "defs"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr


# --- recipe folders outside the package ---------------------------------------------------------


def test_an_outside_folder_adds_a_group_beside_the_shipped_ones(tmp_path):
    write(tmp_path / "mine", "my_sentiment", GOOD)
    listed = f"{tmp_path / 'mine'}{os.pathsep}shipped"
    groups = python(GROUPS, FINETUNE_RECIPES=listed)
    assert "my_sentiment" in groups and "tweet_sentiment" in groups
    alone = python(GROUPS, FINETUNE_RECIPES=str(tmp_path / "mine"))
    assert alone == "['my_sentiment']"


def test_a_projects_pyproject_names_its_recipe_folders(tmp_path):
    project = tmp_path / "my_project"
    write(project / "recipes", "support_chat", GOOD)
    (project / "pyproject.toml").write_text('[tool.finetune_assets]\nrecipes = ["recipes"]\n')
    (project / "src").mkdir()
    environment = {key: value for key, value in os.environ.items() if key != "FINETUNE_RECIPES"}
    done = subprocess.run(
        [sys.executable, "-c", GROUPS], cwd=project / "src", capture_output=True, text=True, env=environment, check=True
    )
    assert done.stdout.strip() == "['support_chat']"
    assert recipe_folders(project) == [project / "recipes"]
    assert recipe_folders(tmp_path) != [project / "recipes"]  # no pyproject above: the shipped recipes


def test_recipe_folders_default_to_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("FINETUNE_RECIPES", raising=False)
    assert recipe_folders(tmp_path) == [SHIPPED_DIR]


def test_a_bad_pyproject_setting_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("FINETUNE_RECIPES", raising=False)
    (tmp_path / "pyproject.toml").write_text('[tool.finetune_assets]\nrecipes = "recipes"\n')
    with pytest.raises(RecipeError, match=r"tool\.finetune_assets\.recipes must be a list"):
        recipe_folders(tmp_path)


# --- a broken recipe takes nothing else down ----------------------------------------------------


def test_a_broken_recipe_becomes_one_asset_that_names_the_error(tmp_path):
    write(tmp_path, "good", GOOD)
    bad = write(tmp_path, "bad", BROKEN)
    defs = build_definitions([tmp_path], strict=False)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {f"good/{stage}" for stage in ("raw_dataset", "exported_model")} <= keys
    assert f"{BROKEN_GROUP}/bad" in keys and not any(key.startswith("bad/") for key in keys)
    spec = next(a for a in defs.assets if a.key.to_user_string() == f"{BROKEN_GROUP}/bad")
    assert (
        str(bad) in spec.descriptions_by_key[spec.key]
        and "training.epocs: unknown key" in spec.descriptions_by_key[spec.key]
    )
    with pytest.raises(RecipeError, match=r"training\.epocs"):
        build_definitions([tmp_path], strict=True)


def test_a_duplicate_recipe_name_is_an_error_naming_both_files(tmp_path):
    first = write(tmp_path / "a", "same", GOOD)
    second = write(tmp_path / "b", "same", GOOD)
    with pytest.raises(RecipeError) as info:
        build_definitions([tmp_path / "a", tmp_path / "b"], strict=True)
    assert str(first) in str(info.value) and str(second) in str(info.value)


@pytest.mark.parametrize("command", [["dagster", "definitions", "validate"], ["dg", "check", "defs"]])
def test_validation_commands_fail_on_a_broken_recipe_naming_file_and_key(tmp_path, command):
    write(tmp_path / "recipes", "good", GOOD)
    bad = write(tmp_path / "recipes", "bad", BROKEN)
    done = subprocess.run(
        [str(VENV_BIN / command[0]), *command[1:]],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), "FINETUNE_RECIPES": str(tmp_path / "recipes")},
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert str(bad) in output and "training.epocs: unknown key" in output


# --- the README's library use, dg launch, the architecture page ----------------------------------


def test_finetune_assets_merges_into_another_projects_definitions(tmp_path):
    import dagster as dg

    write(tmp_path / "recipes", "my_recipe", GOOD)

    @dg.asset(deps=[dg.AssetKey(["my_recipe", "exported_model"])])
    def my_report_asset() -> None:
        """A user's own asset downstream of the exported model."""

    fine_tuning = build_definitions(recipe_dirs=[tmp_path / "recipes"], artifacts_root=str(tmp_path / "art"))
    merged = dg.Definitions.merge(fine_tuning, dg.Definitions(assets=[my_report_asset]))
    graph = merged.resolve_asset_graph()
    assert dg.AssetKey(["my_recipe", "exported_model"]) in graph.get(dg.AssetKey("my_report_asset")).parent_keys
    assert {"artifacts", "artifact_refs", "run_settings"} <= set(merged.resources)
    dg.Definitions.validate_loadable(merged)


def test_dg_launch_materializes_an_asset(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "rows.csv").write_text(
        "text,label\n" + "".join(f"row number {i},{'positive' if i % 2 else 'negative'}\n" for i in range(20))
    )
    write(tmp_path / "recipes", "tiny", {**GOOD, "dataset": {**GOOD["dataset"], "source": "rows.csv"}})
    done = subprocess.run(
        [str(VENV_BIN / "dg"), "launch", "--assets", "tiny/raw_dataset"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DAGSTER_HOME": str(tmp_path),
            "FINETUNE_RECIPES": str(tmp_path / "recipes"),
            "FINETUNE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        },
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert list((tmp_path / "artifacts" / "tiny" / "raw_dataset").glob("*/rows.parquet"))


def test_the_architecture_page_names_every_module():
    section = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.name == "__init__.py" or relative.parts[0] == "metrics":
            continue
        named = (
            str(relative) in section
            or (f"{relative.parent}/" in section and f"`{relative.name}`" in section)
            or (f"`{relative.name}`" in section and len(relative.parts) == 1)
        )
        if not named:
            missing.append(str(relative))
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_every_module_the_architecture_page_names_exists():
    rows = [
        line
        for line in (PACKAGE.parent / "docs" / "architecture.md").read_text().splitlines()
        if line.startswith("| `")
    ]
    named = [name for row in rows for name in re.findall(r"`([\w/.]+)`", row.split(" | ")[0])]
    assert len(named) > 40
    absent = [name for name in named if not (PACKAGE / name).exists()]
    assert not absent, f"docs/architecture.md names modules the package lacks: {absent}"


def test_no_function_in_the_package_is_over_60_lines():
    """A function a reader can hold in view: longer ones are split into named steps."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not long, f"functions over 60 lines: {long}"
