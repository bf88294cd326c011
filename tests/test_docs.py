"""The documentation: a README short enough to read in minutes whose picture is the real chain, a
recipe reference generated from the schema (so every key has a description), pages that name what
the code and the UI test really do, and a site that `mkdocs build --strict` builds offline and
refuses to build with a broken link or a page missing from the nav."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from finetune_assets.pipeline.chain import STAGES
from finetune_assets.recipes import load_recipes
from finetune_assets.tasks import REGISTRY

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
MKDOCS = Path(sys.executable).parent / "mkdocs"


def hook(name: str):
    """A build hook of docs/hooks/, imported as MkDocs imports it: by its file path."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = hook("recipe_reference")


def build(config: Path, site: Path, shots: Path) -> subprocess.CompletedProcess:
    if not MKDOCS.exists():
        pytest.skip(f"mkdocs is not installed in {MKDOCS.parent}: pip install -e '.[docs]'")
    env = {
        **os.environ,
        "FINETUNE_UI_SHOTS": str(shots),
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
    )


# --- the README ------------------------------------------------------------------------------------


def test_the_readme_is_at_most_200_lines():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_the_readmes_asset_graph_is_the_chain():
    readme = (REPO / "README.md").read_text()
    graph = readme[readme.index("```mermaid") :]
    graph = graph[: graph.index("```", 3)]
    drawn = set(re.findall(r"(\w+) --> (\w+)", graph))
    assert drawn == {(upstream, stage.name) for stage in STAGES for upstream in stage.upstream}


def test_the_readmes_links_into_the_docs_resolve():
    links = re.findall(r"\]\((docs/[^)#]+)", (REPO / "README.md").read_text())
    assert len(links) >= 10
    assert not [link for link in links if not (REPO / link).is_file()]


# --- the recipe reference --------------------------------------------------------------------------


def test_every_recipe_key_has_a_description():
    keys = dict(REFERENCE.keys())
    assert {"training.max_length", "compute.kubernetes.gpus", "automation.retrain.cron", "dataset"} <= set(keys)
    assert not [key for key, field in keys.items() if not (field.description or "").strip()]


def test_the_reference_names_every_key_with_type_default_and_description():
    reference = REFERENCE.render()
    for key, _field in REFERENCE.keys():  # noqa: SIM118 - a function of the hook, not a dict
        assert f"| `{key}` |" in reference, key
    row = next(line for line in reference.splitlines() if line.startswith("| `training.max_length` |"))
    assert row.split(" | ")[1:3] == ["int (> 0)", "`128`"] and "longer inputs are cut" in row
    method = next(line for line in reference.splitlines() if line.startswith("| `method` |"))
    assert '"full" \\| "lora" \\| "qlora"' in method


# --- the pages name what is real -------------------------------------------------------------------


def test_the_ui_tour_shows_exactly_the_screenshots_the_ui_test_takes():
    taken = {
        re.sub(r"\{\w+\}", "*", name) + ".png"
        for name in re.findall(r'shoot\(f?"([^"]+)"', (REPO / "tests" / "test_ui.py").read_text())
    }
    tour = (DOCS / "ui-tour.md").read_text()
    assert set(re.findall(r"<!-- screenshot ([\w.*]+) -->", tour)) == taken
    assert len(taken) == 10


def table_rows(page: str) -> dict[str, list[str]]:
    """The rows of the markdown tables in ``page`` whose first cell is code, by that cell."""
    return {
        cells[0].strip("` "): cells
        for line in page.splitlines()
        if line.startswith("| `")
        for cells in [line.strip("|").split(" | ")]
    }


def test_the_task_families_table_is_the_registry_and_the_shipped_recipes():
    rows = table_rows((DOCS / "task-families.md").read_text().split("## Adding a family")[0])
    assert set(rows) == set(REGISTRY)
    shipped = {}
    for recipe in load_recipes():
        shipped.setdefault(recipe.task, set()).add(recipe.name)
    for name, family in REGISTRY.items():
        assert f"`{family.primary_metric}`" in rows[name][2]
        assert set(re.findall(r"`(\w+)`", rows[name][3])) == shipped.get(name, set())


def test_the_task_interface_sides_table_names_each_sides_required_methods():
    from finetune_assets.tasks import base

    rows = table_rows((DOCS / "task-families.md").read_text().split("## Adding a family")[1])
    sides = {name: getattr(base, name) for name in ("DataSide", "TrainingSide", "EvaluationSide", "ExportSide")}
    assert set(rows) == set(sides)
    for name, side in sides.items():
        assert set(re.findall(r"`(\w+)`", rows[name][2])) == set(side.__abstractmethods__), name
    assert set(base.TaskFamily.__mro__) >= set(sides.values())


def test_the_docs_extra_is_pinned_installed_by_setup_and_built_strictly_in_ci():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["docs"] == ["mkdocs==1.6.1", "mkdocs-material==9.8.2"]
    installed = re.search(r'pip install -q -e "\.\[([\w,]+)\]"', (REPO / "scripts" / "setup.sh").read_text())
    assert installed and {"dev", "docs", "mlflow"} <= set(installed.group(1).split(","))
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("bash scripts/test.sh") < ci.index("mkdocs build --strict")


def test_every_file_the_pages_name_exists():
    named = {
        (page.name, path)
        for page in [REPO / "README.md", *DOCS.glob("*.md")]
        for path in re.findall(r"`(?:finetune_assets/)?((?:\w+/)+\w+\.(?:py|yaml|jsonl|md|sh))`", page.read_text())
    }
    assert len(named) > 30
    roots = [REPO, REPO / "finetune_assets"]  # artifact paths (exported_model/...) are no files of the repository
    missing = sorted(
        (page, path)
        for page, path in named
        if any((root / path.split("/")[0]).is_dir() for root in roots)
        and not any((root / path).exists() for root in roots)
    )
    assert not missing, f"pages name files that do not exist: {missing}"


# --- the site --------------------------------------------------------------------------------------


def test_the_site_builds_strictly_with_the_generated_reference_and_no_web_fonts(tmp_path):
    (tmp_path / "shots").mkdir()
    done = build(REPO / "mkdocs.yml", tmp_path / "site", tmp_path / "shots")
    assert done.returncode == 0, done.stderr[-3000:]
    reference = (tmp_path / "site" / "recipe-reference" / "index.html").read_text()
    assert "<!-- recipe-reference -->" not in reference
    assert all(f"<code>{key}</code>" in reference for key, _ in REFERENCE.keys())  # noqa: SIM118 - a function, not a dict
    pages = list((tmp_path / "site").rglob("*.html"))
    assert not [page for page in pages if "fonts.googleapis.com" in page.read_text()]
    tour = (tmp_path / "site" / "ui-tour" / "index.html").read_text()
    assert "<code>01_group_graph.png</code>: run <code>pytest tests/test_ui.py</code>" in tour


def test_the_ui_tests_screenshots_appear_on_the_tour_where_they_exist(tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("01_group_graph.png", "06_checks_clean_dataset_schema_valid.png"):
        (shots / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())  # the hook copies bytes as they are
    done = build(REPO / "mkdocs.yml", tmp_path / "site", shots)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "ui" / "01_group_graph.png").read_bytes() == (shots / "01_group_graph.png").read_bytes()
    tour = (tmp_path / "site" / "ui-tour" / "index.html").read_text()
    assert 'src="../ui/01_group_graph.png"' in tour and 'src="../ui/06_checks_clean_dataset_schema_valid.png"' in tour
    assert "<code>02_run.png</code>: run" in tour


@pytest.mark.parametrize("breakage", ["a page missing from the nav", "a broken link"])
def test_the_strict_build_fails_on(tmp_path, breakage):
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    if breakage == "a page missing from the nav":
        (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n")
    else:
        with open(tmp_path / "docs" / "index.md", "a") as page:
            page.write("\nSee [the missing page](missing.md).\n")
    (tmp_path / "shots").mkdir()
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site", tmp_path / "shots")
    assert done.returncode != 0
    assert ("orphan.md" if breakage == "a page missing from the nav" else "missing.md") in done.stderr
