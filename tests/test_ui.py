"""The Dagster UI as a reviewer sees it, driven in a real browser (headless Chromium through
Playwright's Python API).

One ``dagster dev`` serves a fresh DAGSTER_HOME with a tiny classification recipe (conftest's
tiny BERT on 120 short reviews) beside the shipped recipes. The browser launches the recipe's
first materialization from its group page, then reads what a reviewer reads: the group graph,
the run, the evaluation report's confusion matrix, every check on the Checks tab, the export page,
the launchpad and the Automation page. Each page is saved as a PNG in ``$FINETUNE_UI_SHOTS``
(default ``ui-screenshots/`` in the repository) for a person to look at.

The browser is ``$FINETUNE_UI_BROWSER``, else Chromium or Chrome on PATH (``.ci/run`` installs
Debian's ``chromium``), else one ``playwright install`` downloaded; with none of them the module is
skipped with a reason. Every process started here is stopped at the end, also when a test fails.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import reviews, write_films_recipe
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster_dev import free_port, stop, wait_until_serving
from playwright.sync_api import Page, expect, sync_playwright

from finetune_assets.pipeline.chain import STAGES

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SHOTS = Path(os.environ.get("FINETUNE_UI_SHOTS") or REPO / "ui-screenshots")
LOCATION = "finetune_assets.definitions"  # the code location's name: the module dagster dev loads
RECIPE = "films"
# Twelve sentiment words are all there is to learn: at this rate the tiny BERT gets every test row
# right within six epochs, so quality gates comparing it with its base pass and the export is made,
# in float32 and in bf16 alike (1e-2 for four epochs learned in bf16 but collapsed to one class in
# float32, on an AMD Zen 3 without native bf16).
TRAINING = {"max_length": 32, "learning_rate": 2e-3, "epochs": 6, "batch_size": 8}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}
BLOCKING_LABEL = re.compile(r"This is a (non-)?blocking asset check")
# Waits for what a page shows (expect) and for what a test does (clicks, fills): a slow or busy
# machine takes many seconds to load the code location behind a page, past Playwright's 5 s.
PATIENCE_MS = 60_000
expect.set_options(timeout=PATIENCE_MS)


def find_browser() -> str | None:
    named = os.environ.get("FINETUNE_UI_BROWSER")
    if named:
        return named
    on_path = next(filter(None, map(shutil.which, BROWSERS)), None)
    if on_path:
        return on_path
    with sync_playwright() as playwright:  # where `playwright install chromium` puts its browser
        downloaded = playwright.chromium.executable_path
    return downloaded if Path(downloaded).exists() else None


@dataclass
class Ui:
    url: str
    page: Page
    instance: DagsterInstance
    artifacts: Path
    log: Path  # dagster dev's output
    blocking: dict[tuple[str, str], bool]  # (asset, check) -> declared blocking, for the recipe's group

    def open(self, path: str) -> Page:
        self.page.goto(self.url + path)
        return self.page

    def shoot(self, name: str, height: int = VIEWPORT["height"]) -> None:
        """Save the page as ``SHOTS/<name>.png``; ``height``: a taller window, for pages whose
        metadata table scrolls inside the page (a full-page screenshot would not show it)."""
        if height != VIEWPORT["height"]:
            self.page.set_viewport_size({**VIEWPORT, "height": height})
            self.page.wait_for_timeout(500)  # virtualized tables render the rows that now fit
        self.page.screenshot(path=SHOTS / f"{name}.png")
        self.page.set_viewport_size(VIEWPORT)


@pytest.fixture(scope="module")
def ui(tmp_path_factory, tiny_bert) -> Iterator[Ui]:
    browser_path = find_browser()
    if browser_path is None:
        pytest.skip(
            "no Chromium to drive: install Debian's `chromium` package (.ci/run does), or set "
            "FINETUNE_UI_BROWSER to a Chromium or Chrome executable"
        )
    root = tmp_path_factory.mktemp("ui")
    (root / "bert").symlink_to(tiny_bert)
    (root / "recipes" / "data").mkdir(parents=True)
    write_films_recipe(root / "recipes", training=TRAINING, checks={})  # the quality gates at their defaults
    reviews(0).to_csv(root / "recipes" / "data" / "reviews.csv", index=False)
    home, artifacts, log = root / "home", root / "artifacts", root / "dagster_dev.log"
    subprocess.run(
        ["bash", str(REPO / "scripts" / "init_dagster_home.sh"), str(home)],
        check=True,
        env={**os.environ, "DAGSTER": str(VENV_BIN / "dagster")},
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        env.setenv("FINETUNE_RECIPES", f"{root / 'recipes'}{os.pathsep}shipped")
        env.setenv("FINETUNE_ARTIFACTS_DIR", str(artifacts))
        from finetune_assets.defs import build_definitions

        defs = build_definitions()  # what the server loads: the same folders, the same environment
        blocking = {
            (spec.asset_key.path[1], spec.name): spec.blocking
            for definition in (*defs.assets, *defs.asset_checks)
            for spec in definition.check_specs
            if spec.asset_key.path[0] == RECIPE
        }
        with open(log, "w") as output:
            server = subprocess.Popen(
                [str(VENV_BIN / "dagster"), "dev", "-m", LOCATION, "-h", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
                cwd=root,
                env=dict(os.environ),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_serving(server, url, log)
            with sync_playwright() as playwright, DagsterInstance.from_config(str(home)) as instance:
                browser = playwright.chromium.launch(executable_path=browser_path, args=BROWSER_FLAGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(PATIENCE_MS)
                # A fresh home greets the first visit with "Join the Dagster community": skip it.
                page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda button: button.click())
                yield Ui(url, page, instance, artifacts, log, blocking)
        finally:
            stop(server)


def asset_nodes(page: Page):
    return page.locator('[class*="AssetNode_assetName"]')


def group_page(ui: Ui) -> Page:
    page = ui.open(f"/locations/{LOCATION}/asset-groups/{RECIPE}")
    expect(asset_nodes(page)).to_have_count(len(STAGES))
    return page


@pytest.fixture(scope="module")
def launched(ui) -> DagsterRun:
    """The recipe's first materialization, launched with the group page's *Materialize all*."""
    page = group_page(ui)
    page.get_by_role("button", name="Materialize all").click()
    view = page.get_by_role("link", name="View", exact=True)  # the "Launched run ..." toast
    run_id = view.get_attribute("href").rsplit("/", 1)[1]
    deadline = time.monotonic() + 300
    while not (run := ui.instance.get_run_by_id(run_id)).is_finished:
        if time.monotonic() > deadline:
            pytest.fail(
                f"run {run_id} launched from the UI still {run.status.value} after 300 s:\n{ui.log.read_text()[-3000:]}"
            )
        time.sleep(1)
    return run


def test_the_group_graph_shows_the_six_assets_in_chain_order(ui, launched):
    page = group_page(ui)
    left_to_right = sorted(asset_nodes(page).all(), key=lambda node: node.bounding_box()["x"])
    assert [node.inner_text() for node in left_to_right] == [stage.name for stage in STAGES]
    ui.shoot("01_group_graph")


def test_a_materialization_launched_from_the_ui_succeeds(ui, launched):
    failures = [
        entry.user_message
        for entry in ui.instance.all_logs(launched.run_id)
        if entry.dagster_event and entry.dagster_event.is_failure
    ]
    assert launched.status == DagsterRunStatus.SUCCESS, "\n".join(failures)
    materialized = {
        entry.dagster_event.asset_key
        for entry in ui.instance.all_logs(launched.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert materialized == {AssetKey([RECIPE, stage.name]) for stage in STAGES}
    page = ui.open(f"/runs/{launched.run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text(f'Finished execution of run for "{launched.job_name}"')).to_be_visible()
    ui.shoot("02_run")
    ui.open(f"/runs/{launched.run_id}?logs=step:{RECIPE}__finetuned_model")  # the training's own log
    # The log list is virtualized and opens at its end: the last progress lines (one per step of this
    # short run) are above the validation and the training's last line.
    progress = page.get_by_text(re.compile(r"step \d+/\d+ \(\d+%, \d+s elapsed, ETA"))
    progress.last.scroll_into_view_if_needed()
    expect(progress.last).to_be_visible()
    ui.shoot("03_run_training_log")


def open_markdown(page: Page, key: str):
    """Open the metadata entry ``key``'s "Show Markdown" dialog; the dialog."""
    metadata_row(page, key).get_by_text("Show Markdown").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("button", name="Close")).to_be_visible()
    page.wait_for_timeout(500)  # the dialog fades in: screenshots taken earlier show it half drawn
    return dialog


def metadata_row(page: Page, key: str):
    return page.locator("tr", has=page.get_by_text(key, exact=True)).first


def metadata_value(page: Page, key: str) -> str:
    return metadata_row(page, key).locator("td").last.inner_text().strip()


def test_the_report_shows_its_figures_and_the_confusion_matrix_the_stage_drew(ui, launched):
    from PIL import Image

    page = ui.open(f"/assets/{RECIPE}/evaluation_report")
    report = Path(metadata_value(page, "path"))
    figures = json.loads(report.read_text())
    for model, prefix in (("tuned", ""), ("baseline", "baseline_")):  # shown rounded, perhaps
        assert float(metadata_value(page, f"{prefix}accuracy")) == pytest.approx(
            figures[model]["metrics"]["accuracy"], abs=1e-3
        )
    ui.shoot("04_evaluation_report", height=2200)
    image = open_markdown(page, "confusion_matrix").locator("img")
    expect(image).to_have_js_property("complete", True)
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 0 and height > 0, "the browser could not decode the confusion matrix"
    png = base64.b64decode(image.get_attribute("src").split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (width, height)
    assert png == (report.parent / "confusion_matrix.png").read_bytes()
    ui.shoot("05_confusion_matrix")


@pytest.fixture(scope="module")
def checks_tab(ui, launched) -> dict[tuple[str, str], tuple[str, str]]:
    """(asset, check) -> (status in the Checks tab's list, the check's "blocking" sentence), for every
    asset of the recipe with checks; each check's page is saved."""
    shown = {}
    for asset in sorted({asset for asset, _ in ui.blocking}):
        page = ui.open(f"/assets/{RECIPE}/{asset}?view=checks")
        rows = page.locator('[class*="AssetChecks_checkRow"]')
        expect(rows).to_have_count(sum(1 for key in ui.blocking if key[0] == asset))
        listed = {
            row.locator("[title]").first.get_attribute("title"): row.inner_text().split("\n")[-1] for row in rows.all()
        }
        for check, status in sorted(listed.items()):
            ui.open(f"/assets/{RECIPE}/{asset}?view=checks&checkDetail={check}")
            shown[asset, check] = status, page.get_by_text(BLOCKING_LABEL).inner_text()
            ui.shoot(f"06_checks_{asset}_{check}")
    return shown


def test_the_checks_tab_lists_every_check_with_its_result_and_blocking_as_declared(ui, launched, checks_tab):
    assert set(checks_tab) == set(ui.blocking)
    evaluations = ui.instance.all_logs(launched.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    results = {
        (
            e.dagster_event.event_specific_data.asset_key.path[1],
            e.dagster_event.event_specific_data.check_name,
        ): "Succeeded" if e.dagster_event.event_specific_data.passed else "Failed"
        for e in evaluations
    }
    assert {key: status for key, (status, _) in checks_tab.items()} == results
    labels = {key: sentence.startswith("This is a blocking") for key, (_, sentence) in checks_tab.items()}
    assert labels == ui.blocking


def test_warn_checks_are_shown_without_the_blocking_label(checks_tab):
    assert any("non-blocking" in sentence for _, sentence in checks_tab.values())


def test_the_export_page_shows_the_champions_folder_and_renders_its_model_card(ui, launched):
    page = ui.open(f"/assets/{RECIPE}/exported_model")
    shown = Path(metadata_value(page, "path"))
    assert shown == (ui.artifacts / RECIPE / "exported_model" / "current").resolve()
    assert (shown / "model.safetensors").is_file() and (shown / "README.md").is_file()
    expect(metadata_row(page, "decision").locator("td").last).to_have_text("promoted (first export)")
    ui.shoot("07_exported_model", height=2600)
    card = open_markdown(page, "model_card")
    expect(card.locator("table").first).to_contain_text("accuracy")  # markdown rendered, not raw text
    expect(card).not_to_contain_text("library_name")  # the front matter stays in the file, off the page
    expect(card).to_contain_text(f'model="{shown}"')  # the usage snippet names the real folder
    ui.shoot("08_model_card", height=2200)


def test_the_launchpad_offers_the_run_settings(ui, launched):
    page = ui.open(f"/locations/{LOCATION}/jobs/{RECIPE}_job/playground")
    editor = page.locator(".CodeMirror").first
    expect(editor).to_contain_text("run_settings")
    expect(editor).to_contain_text("force: false")
    expect(editor).to_contain_text("promote: false")
    ui.shoot("09_launchpad")


def test_the_automation_page_lists_the_new_data_sensor_stopped(ui, launched):
    page = ui.open("/automation")
    sensor = page.locator('[class*="ListItem_listItem_"]', has=page.get_by_text(f"{RECIPE}_new_data", exact=True))
    expect(sensor.locator('[class*="formatSwitch"] input')).not_to_be_checked()
    ui.shoot("10_automation")


def test_ci_installs_the_browser_before_the_tests():
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("apt-get install -y -qq chromium") < ci.index("bash scripts/test.sh")
