"""The promotion gate: fair comparisons on the same rows, what blocks a challenger, and decisions
taken by several processes at once. Unit tests on plain refs, then whole runs on a tiny real BERT."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import reviews, write_films_recipe
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    asset_check,
    materialize,
)

from finetune_assets.checks.declaration import Severity
from finetune_assets.defs import build_definitions
from finetune_assets.defs.resources import RunSettings
from finetune_assets.defs.run_launcher import HOST_TAG
from finetune_assets.errors import PromotionError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.caching import save
from finetune_assets.pipeline.facts import FailedCheck, RunFacts
from finetune_assets.promotion import champion as champion_store
from finetune_assets.promotion import gate
from finetune_assets.promotion.decision import Decision, Verdict, was_promoted
from finetune_assets.recipes import load_recipe
from finetune_assets.report.values import Markdown
from finetune_assets.tasks import get_task

ACCURACY = gate.Rule("accuracy", higher_is_better=True, min_improvement=0.01)


class Log:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)

    warning = info


def export_ref(root: Path, name: str, accuracy: float, **info) -> ArtifactRef:
    """An export folder with a complete record, as the runner leaves one."""
    folder = root / name
    folder.mkdir()
    (folder / "model.safetensors").write_text(f"weights of {name}")
    ref = ArtifactRef(str(folder), name, {"metrics": {"accuracy": accuracy, "perplexity": 10 / accuracy}, **info})
    save(folder, ref, {})
    return ref


def challenger(root: Path, name: str, accuracy: float, test_rows: int = 200, **kwargs) -> gate.Challenger:
    ref = export_ref(root, name, accuracy)
    return gate.Challenger(ref, ref.info["metrics"], test_rows, **kwargs)


def own_figures(champion: ArtifactRef) -> dict:
    """A stand-in scorer: the champion scores on the challenger's rows what it scored on its own."""
    return champion.info["metrics"]


def test_promotion_gate_promotes_better_and_keeps_the_champion_otherwise(tmp_path):
    first = challenger(tmp_path, "first", 0.80)
    champion, meta = gate.decide(first, tmp_path, ACCURACY, Log(), own_figures)
    assert meta["decision"] == "promoted (first export)" and champion == first.ref
    worse = challenger(tmp_path, "worse", 0.75)
    champion, meta = gate.decide(worse, tmp_path, ACCURACY, Log(), own_figures)
    assert meta["decision"] == "kept champion" and champion.path == first.ref.path
    assert meta["challenger_accuracy"] == 0.75 and meta["champion_accuracy"] == 0.80
    assert (Path(worse.ref.path) / "model.safetensors").exists(), "the challenger stays on disk"
    assert (tmp_path / "current").resolve() == Path(first.ref.path).resolve()
    assert (tmp_path / "current" / "model.safetensors").read_text() == "weights of first"
    tiny_gain = challenger(tmp_path, "tiny_gain", 0.805)
    assert gate.decide(tiny_gain, tmp_path, ACCURACY, Log(), own_figures)[1]["decision"] == "kept champion"
    better = challenger(tmp_path, "better", 0.90)
    champion, meta = gate.decide(better, tmp_path, ACCURACY, Log(), own_figures)
    assert meta["decision"] == "promoted" and champion.path == better.ref.path
    assert (tmp_path / "current").resolve() == Path(better.ref.path).resolve()
    history = champion_store.history(tmp_path)
    assert [row["decision"] for row in history] == [
        "promoted (first export)",
        "kept champion",
        "kept champion",
        "promoted",
    ]
    assert meta["evaluation_history_plot"].text.startswith("![evaluation history](data:image/png;base64,")


def test_promotion_gate_lower_is_better(tmp_path):
    rule = gate.Rule("perplexity", higher_is_better=False, min_improvement=0.0)
    gate.decide(challenger(tmp_path, "a", 0.5), tmp_path, rule, Log(), own_figures)  # perplexity 20
    _, meta = gate.decide(challenger(tmp_path, "b", 0.4), tmp_path, rule, Log(), own_figures)  # 25: worse
    assert meta["decision"] == "kept champion"
    _, meta = gate.decide(challenger(tmp_path, "c", 0.8), tmp_path, rule, Log(), own_figures)  # 12.5
    assert meta["decision"] == "promoted"


def test_the_champion_is_compared_on_the_challengers_rows_not_on_its_own(tmp_path):
    gate.decide(challenger(tmp_path, "champion", 0.70), tmp_path, ACCURACY, Log(), own_figures)
    # On the challenger's rows the champion scores 0.95: the challenger's 0.90 is worse there,
    # although it beats the champion's own 0.70 measured on other rows.
    scored = []

    def on_these_rows(champion):
        scored.append(champion.fingerprint)
        return {"accuracy": 0.95}

    _, meta = gate.decide(challenger(tmp_path, "easy_rows", 0.90), tmp_path, ACCURACY, Log(), on_these_rows)
    assert scored == ["champion"]
    assert meta["decision"] == "kept champion"
    assert meta["champion_accuracy"] == 0.95
    assert "| accuracy | 0.9000 | n/a | 0.9500 |" in meta["models_side_by_side"].text
    assert champion_store.history(tmp_path)[-1]["champion_accuracy"] == 0.95
    # What the report already measured for this champion is used as it is, not measured again.
    known = {"fingerprint": "champion", "metrics": {"accuracy": 0.5}}
    _, meta = gate.decide(
        challenger(tmp_path, "hard_rows", 0.60, known_champion=known), tmp_path, ACCURACY, Log(), on_these_rows
    )
    assert scored == ["champion"] and meta["decision"] == "promoted"


def test_a_champion_that_cannot_be_scored_on_these_rows_is_kept_with_the_reason(tmp_path):
    gate.decide(challenger(tmp_path, "old", 0.70), tmp_path, ACCURACY, Log(), own_figures)

    def incompatible(champion):
        raise ValueError("size mismatch for classifier.weight")

    champion, meta = gate.decide(challenger(tmp_path, "new", 0.99), tmp_path, ACCURACY, Log(), incompatible)
    assert champion.fingerprint == "old"
    assert meta["decision"].startswith("not promoted: the champion")
    assert "size mismatch" in meta["decision"] and "champion.json" in meta["decision"]


def test_what_blocks_a_challenger(make_recipe):
    recipe = make_recipe()
    warn = FailedCheck(
        "clean_dataset", "class_balance", Severity.WARN, "largest class / smallest class = 12 (limit 10)"
    )
    error = FailedCheck("tokenized_splits", "no_train_test_leakage", Severity.ERROR, "3 test rows also occur in train")
    assert gate.blockers(recipe, 200, RunFacts(failed_checks=())) == []
    found = gate.blockers(recipe, 200, RunFacts(failed_checks=(warn,)))
    assert found == ["check clean_dataset/class_balance (WARN): largest class / smallest class = 12 (limit 10)"]
    relaxed = make_recipe("relaxed", promotion={"allow_warnings": True})
    assert gate.blockers(relaxed, 200, RunFacts(failed_checks=(warn,))) == []
    assert len(gate.blockers(relaxed, 200, RunFacts(failed_checks=(warn, error)))) == 1
    smoke = RunFacts(failed_checks=(), overrides={"max_train_samples": 400, "max_eval_samples": 200})
    [reason] = gate.blockers(recipe, 200, smoke)
    assert "max_eval_samples=200, max_train_samples=400" in reason and "promote: true" in reason
    allowed = RunFacts(failed_checks=(), overrides={"epochs": 1}, promote_with_overrides=True)
    assert gate.blockers(recipe, 200, allowed) == []
    # The report's example: 10 test rows never promote (default min_test_rows 100).
    [reason] = gate.blockers(recipe, 10, RunFacts(failed_checks=()))
    assert "10 rows" in reason and "promotion.min_test_rows (100)" in reason
    assert gate.blockers(make_recipe("small", promotion={"min_test_rows": 10}), 10, RunFacts()) == []


def test_a_challenger_whose_figure_is_not_a_number_is_never_promoted(tmp_path):
    broken = challenger(tmp_path, "diverged", float("nan"))
    _, meta = gate.decide(broken, tmp_path, ACCURACY, Log(), own_figures)
    assert meta["decision"] == "not promoted: its accuracy is nan, which cannot be compared"


def test_a_blocked_challenger_is_never_promoted_even_without_a_champion(tmp_path):
    blocked = challenger(tmp_path, "smoke", 1.0, test_rows=10, blockers=["the test split has 10 rows"])
    champion, meta = gate.decide(blocked, tmp_path, ACCURACY, Log(), own_figures)
    assert meta["decision"] == "not promoted: the test split has 10 rows" and not meta["promoted"]
    assert champion == blocked.ref, "with no champion yet the asset points at the latest export"
    assert not (tmp_path / "champion.json").exists() and not (tmp_path / "current").exists()


@pytest.mark.parametrize(
    "decision, text",
    [
        (Decision(Verdict.PROMOTED_FIRST), "promoted (first export)"),
        (Decision(Verdict.PROMOTED, variant="lr=1e-3"), "promoted (sweep variant lr=1e-3)"),
        (Decision(Verdict.KEPT), "kept champion"),
        (
            Decision(Verdict.NOT_PROMOTED, ("a check failed", "too few rows")),
            "not promoted: a check failed; too few rows",
        ),
        (Decision(Verdict.ALREADY_CHAMPION, variant="r=8"), "already champion (sweep variant r=8)"),
    ],
)
def test_the_decision_is_typed_and_its_text_reads_back_as_the_same_verdict(decision, text):
    assert decision.text == text
    assert Verdict.of_text(text) is decision.verdict
    assert (
        was_promoted({"decision": text})
        is decision.promoted
        is (decision.verdict in (Verdict.PROMOTED_FIRST, Verdict.PROMOTED))
    )


def test_the_metadata_promoted_flag_follows_the_decision(tmp_path):
    decided = [
        gate.decide(challenger(tmp_path, name, accuracy, **kwargs), tmp_path, ACCURACY, Log(), own_figures)[1]
        for name, accuracy, kwargs in [
            ("blocked", 0.9, {"blockers": ["a failed check"]}),
            ("first", 0.8, {}),
            ("worse", 0.7, {}),
            ("better", 0.9, {"variant": "lr=1e-3"}),
        ]
    ]
    assert [(meta["decision"], meta["promoted"]) for meta in decided] == [
        ("not promoted: a failed check", False),
        ("promoted (first export)", True),
        ("kept champion", False),
        ("promoted (sweep variant lr=1e-3)", True),
    ]
    assert all(meta["promoted"] is Verdict.of_text(meta["decision"]).promotes for meta in decided)


def test_history_rows_written_as_text_by_older_versions_are_read_right(tmp_path):
    """The history file of an older version holds only decision texts: recovering a lost champion
    still finds the newest promoted export, past later exports that were not promoted."""
    for name in ("first", "second", "kept", "blocked"):
        export_ref(tmp_path, name, 0.8)
    rows = [
        ("first", "promoted (first export)"),
        ("second", "promoted (sweep variant lr=1e-3)"),
        ("kept", "kept champion (sweep variant lr=1e-2)"),
        ("blocked", "not promoted: check a/b (WARN): bad"),
    ]
    (tmp_path / "evaluation_history.jsonl").write_text(
        "".join(json.dumps({"fingerprint": name, "accuracy": 0.8, "decision": text}) + "\n" for name, text in rows)
    )
    (tmp_path / "champion.json").write_text("lost")
    assert champion_store.read(tmp_path, Log()).fingerprint == "second"
    assert [was_promoted(row) for row in champion_store.history(tmp_path)] == [True, True, False, False]
    assert Verdict.of_text("promoted?") is None and not was_promoted({"decision": "promoted?"}) and not was_promoted({})


def _decide_in_child(root: str, name: str, accuracy: float, barrier) -> None:
    barrier.wait()
    ref = ArtifactRef.from_json((Path(root) / f"{name}.ref.json").read_text())
    gate.decide(gate.Challenger(ref, ref.info["metrics"], 200), Path(root), ACCURACY, Log(), own_figures)


def test_two_processes_deciding_at_once_leave_one_valid_champion_the_better_one(tmp_path, monkeypatch):
    monkeypatch.setattr(gate, "_history_plot", lambda *args: Markdown(""))  # not under test; slow
    context = multiprocessing.get_context("fork")
    for trial in range(40):
        root = tmp_path / str(trial)
        root.mkdir()
        for name, accuracy in (("better", 0.9), ("worse", 0.8)):
            (root / f"{name}.ref.json").write_text(export_ref(root, name, accuracy).to_json())
        barrier = context.Barrier(2)
        workers = [
            context.Process(target=_decide_in_child, args=(str(root), name, accuracy, barrier))
            for name, accuracy in (("worse", 0.8), ("better", 0.9))
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert [worker.exitcode for worker in workers] == [0, 0], f"trial {trial}"
        champion = ArtifactRef.from_json((root / "champion.json").read_text())
        assert champion.fingerprint == "better", f"trial {trial}: {champion.fingerprint}"
        assert (root / "current").resolve() == (root / "better").resolve()
        assert len(champion_store.history(root)) == 2
        assert not list(root.glob(".*.tmp")), "no temp file is left behind"


@pytest.mark.parametrize(
    "damage", [b'{"path": "/half/writ', b"", b"\xff\xfe\x00garbage", b"{}", b"[1, 2]", b'{"path": 1, "fingerprint": 2}']
)
def test_a_corrupt_champion_file_is_recovered_from_the_history(tmp_path, damage):
    gate.decide(challenger(tmp_path, "first", 0.80), tmp_path, ACCURACY, Log(), own_figures)
    gate.decide(challenger(tmp_path, "second", 0.90), tmp_path, ACCURACY, Log(), own_figures)
    (tmp_path / "champion.json").write_bytes(damage)  # a disk fault, a hand edit
    log = Log()
    assert champion_store.read(tmp_path, log).fingerprint == "second"
    assert "recovered champion second" in log.lines[0]
    _, meta = gate.decide(challenger(tmp_path, "third", 0.85), tmp_path, ACCURACY, Log(), own_figures)
    assert meta["decision"] == "kept champion" and meta["champion_accuracy"] == 0.90
    assert ArtifactRef.from_json((tmp_path / "champion.json").read_text()).fingerprint == "second", "repaired"


def test_a_corrupt_champion_file_without_history_names_the_file(tmp_path):
    (tmp_path / "champion.json").write_text("not json at all")
    with pytest.raises(PromotionError) as info:
        champion_store.read(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "champion.json") in message and "delete it" in message


# --- whole runs through Dagster on a tiny BERT ----------------------------------------------------


@pytest.fixture
def project(films_project):
    recipes, artifacts = films_project
    reviews(0).to_csv(recipes / "data" / "reviews.csv", index=False)
    return recipes, artifacts


def run(recipes: Path, artifacts: Path, instance=None, checks=None, **settings):
    """Materialize the recipe's assets and (unless ``checks`` says otherwise) its checks."""
    defs = build_definitions([recipes], str(artifacts))
    instance = instance or DagsterInstance.ephemeral()
    result = materialize(
        [*defs.assets, *(defs.asset_checks if checks is None else checks)],
        instance=instance,
        resources={**defs.resources, "run_settings": RunSettings(**settings)},
    )
    assert result.success
    events = {e.asset_key.path[1]: e.materialization for e in result.get_asset_materialization_events()}
    return events, instance.get_run_by_id(result.run_id)


def test_the_report_scores_the_champion_on_the_challengers_rows(project, tmp_path):
    from datasets import load_from_disk
    from sklearn.metrics import f1_score
    from transformers import pipeline

    from finetune_assets.inference.evaluation import score_export
    from finetune_assets.models import precision

    recipes, artifacts = project
    first, _ = run(recipes, artifacts)
    assert first["exported_model"].metadata["decision"].value == "promoted (first export)"
    champion_path = first["exported_model"].metadata["path"].value
    assert first["evaluation_report"].metadata["champion"].value == "none yet"
    reviews(1).to_csv(recipes / "data" / "reviews.csv", index=False)  # new data: other test rows
    second, _ = run(recipes, artifacts)
    report = second["evaluation_report"].metadata
    assert report["champion_path"].value == champion_path
    # Score the champion export by hand on the second run's test rows: the same figure.
    test = load_from_disk(second["tokenized_splits"].metadata["path"].value)["test"]
    classify = pipeline("text-classification", model=champion_path, device="cpu")
    films = load_recipe(recipes / "films.yaml")
    with precision.resolve(films).inference():  # the precision the report scored in: a random tiny model has near-ties
        predicted = [["negative", "positive"].index(row["label"]) for row in classify(list(test["text"]))]
    by_hand = f1_score(test["label"], predicted, average="macro")
    assert report["champion_f1_macro"].value == pytest.approx(by_hand, abs=5e-5)  # shown to 4 significant digits
    assert report["test_rows"].value == len(test)
    assert "current champion" in report["models_side_by_side"].value
    # The champion's own tokenizer reads the rows: ids stored by another tokenizer are not used.
    tampered = tmp_path / "tampered_splits"
    splits = load_from_disk(second["tokenized_splits"].metadata["path"].value)
    splits["test"] = test.map(lambda row: {"input_ids": [0] * len(row["input_ids"])})
    splits.save_to_disk(str(tampered))
    rescored, rows = score_export(get_task(films), tampered, Path(champion_path), tmp_path / "scratch", Log())
    assert rows == len(test) and rescored.metrics["f1_macro"] == pytest.approx(by_hand, abs=1e-6)
    export = second["exported_model"].metadata
    assert "current champion" in export["models_side_by_side"].value
    assert export["champion_f1_macro"].value == pytest.approx(by_hand, abs=5e-5)
    decided = json.loads(
        (artifacts / "films" / "exported_model" / "evaluation_history.jsonl").read_text().splitlines()[-1]
    )  # the figures the gate compared, to 6 decimals
    assert decided["champion_f1_macro"] == pytest.approx(by_hand, abs=1e-6)
    assert export["decision"].value == (
        "promoted" if decided["f1_macro"] > decided["champion_f1_macro"] else "kept champion"
    )
    scores = list((artifacts / "films" / "champion_scores").glob("*/scores.json"))
    assert len(scores) == 1 and json.loads(scores[0].read_text())["test_rows"] == len(test)
    third, _ = run(recipes, artifacts)  # unchanged: the champion is not scored again
    assert "champion_f1_macro" in third["evaluation_report"].metadata
    assert len(list((artifacts / "films" / "champion_scores").glob("*/scores.json"))) == 1


def test_a_champion_evaluated_on_the_same_rows_is_not_scored_again(project):
    recipes, artifacts = project
    first, _ = run(recipes, artifacts)
    write_films_recipe(recipes, training={"max_length": 32, "learning_rate": 5e-4, "epochs": 1})  # same data, splits
    second, _ = run(recipes, artifacts)
    assert second["tokenized_splits"].metadata["cache_hit"].value
    assert (
        second["evaluation_report"].metadata["champion_f1_macro"].value
        == first["evaluation_report"].metadata["f1_macro"].value
    )
    assert not (artifacts / "films" / "champion_scores").exists()


def test_only_check_results_on_the_challengers_own_data_count(project):
    recipes, artifacts = project
    defs = build_definitions([recipes], str(artifacts))
    instance = DagsterInstance.ephemeral()
    data = reviews(0)
    duplicated = pd.concat([data, data.head(30)])
    duplicated.to_csv(recipes / "data" / "reviews.csv", index=False)
    warned, _ = run(recipes, artifacts, instance)
    assert "duplicate_rate (WARN)" in warned["exported_model"].metadata["decision"].value
    data.to_csv(recipes / "data" / "reviews.csv", index=False)  # fixed data, but its checks are not run
    unchecked, _ = run(recipes, artifacts, instance, checks=[])
    decision = unchecked["exported_model"].metadata["decision"].value
    assert "duplicate_rate (WARN)" not in decision, "a result on other data says nothing about this one"
    assert "clean_dataset/duplicate_rate (ERROR): no result on this data" in decision
    assert decision.count("no result on this data") == 7, "every check of the lineage"
    duplicated.to_csv(recipes / "data" / "reviews.csv", index=False)  # the warned data again, checks not run
    again, _ = run(recipes, artifacts, instance, checks=[])
    assert "duplicate_rate (WARN)" in again["exported_model"].metadata["decision"].value, "found in history"

    @asset_check(asset=AssetKey(["films", "clean_dataset"]), name="house_rule")
    def house_rule() -> AssetCheckResult:  # a check a project merging the recipes adds
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, description="no films on Mondays")

    data.to_csv(recipes / "data" / "reviews.csv", index=False)
    custom, _ = run(recipes, artifacts, instance, checks=[*defs.asset_checks, house_rule])
    assert custom["exported_model"].metadata["decision"].value == (
        "not promoted: check clean_dataset/house_rule (WARN): no films on Mondays"
    )


def test_a_failed_warning_on_the_lineage_blocks_promotion_unless_allowed(project):
    """Then the export promoted is readable by another account (its own run saved)."""
    recipes, artifacts = project
    data = reviews(0)
    pd.concat([data, data.head(30)]).to_csv(recipes / "data" / "reviews.csv", index=False)  # 30 duplicates: WARN
    blocked, _ = run(recipes, artifacts)
    decision = blocked["exported_model"].metadata["decision"].value
    assert decision.startswith("not promoted: check clean_dataset/duplicate_rate (WARN)"), decision
    assert not (artifacts / "films" / "exported_model" / "champion.json").exists()
    write_films_recipe(recipes, promotion={"min_test_rows": 10, "allow_warnings": True})
    allowed, _ = run(recipes, artifacts)
    assert allowed["exported_model"].metadata["decision"].value == "promoted (first export)"
    assert_readable_by_another_account(Path(allowed["exported_model"].metadata["path"].value))


def test_a_run_with_overrides_is_tagged_and_promotes_only_when_it_says_so(project):
    recipes, artifacts = project
    smoke, smoke_run = run(recipes, artifacts, max_train_samples=40)
    shown = show(artifacts)  # what CI prints after its smoke run
    assert shown.returncode == 0, shown.stderr
    assert "gate decision:     not promoted: the run overrides the recipe (max_train_samples=40)" in shown.stdout
    assert "champion:          none yet" in shown.stdout
    assert smoke_run.tags["finetune_assets/run_overrides"] == "max_train_samples=40"
    assert smoke_run.tags[HOST_TAG] == socket.gethostname(), "run monitoring can check this run"
    assert smoke["exported_model"].metadata["champion_path"].value == "none yet"
    assert smoke["finetuned_model"].tags["finetune_assets/run_overrides"] == "max_train_samples"
    assert smoke["finetuned_model"].metadata["run_overrides"].value == "max_train_samples=40"
    decision = smoke["exported_model"].metadata["decision"].value
    assert decision.startswith("not promoted: the run overrides the recipe (max_train_samples=40)")
    assert not (artifacts / "films" / "exported_model" / "champion.json").exists()
    promoted, promoted_run = run(recipes, artifacts, max_train_samples=40, promote=True)
    assert promoted["exported_model"].metadata["decision"].value == "promoted (first export)"
    assert promoted_run.tags["finetune_assets/run_settings"] == "promote=True", "told apart from a plain smoke run"
    assert "finetune_assets/run_settings" not in smoke_run.tags
    plain, plain_run = run(recipes, artifacts)
    assert (
        "finetune_assets/run_overrides" not in plain_run.tags and "finetune_assets/run_settings" not in plain_run.tags
    )
    assert "finetune_assets/run_overrides" not in plain["finetuned_model"].tags


def show(artifacts: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "finetune_assets.show", "films"],
        capture_output=True,
        text=True,
        env={**os.environ, "FINETUNE_ARTIFACTS_DIR": str(artifacts), "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def assert_readable_by_another_account(export: Path) -> None:
    """Every file of the export readable by others, every folder enterable; as root, read for real
    as user ``nobody``."""
    for path in [export, *export.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o004, f"{path} is not readable by others ({oct(mode)})"
        if path.is_dir():
            assert mode & 0o001, f"{path} cannot be entered by others ({oct(mode)})"
    if os.geteuid() == 0:  # read it for real as user 'nobody'
        private = {folder: folder.stat().st_mode for folder in export.parents if not folder.stat().st_mode & 0o001}
        for folder, mode in private.items():  # pytest's own temp folders are private; open them a moment
            os.chmod(folder, mode | 0o005)
        try:
            child = os.fork()
            if child == 0:
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    for path in export.rglob("*"):
                        if path.is_file():
                            path.open("rb").read(16)
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            assert os.waitpid(child, 0)[1] == 0, "user nobody could not read the export"
        finally:
            for folder, mode in private.items():
                os.chmod(folder, mode)


@pytest.mark.parametrize("name", ["tweet_sentiment", "tweet_sentiment_sweep", "paper_summaries", "chatbot_sft"])
def test_shipped_offline_recipes_score_enough_test_rows_to_promote(name):
    from finetune_assets.data.cleaning import clean
    from finetune_assets.data.sources import read_dataset
    from finetune_assets.data.splitting import split_rows
    from finetune_assets.recipes import SHIPPED_DIR, load_recipe
    from finetune_assets.tasks import get_task

    recipe = load_recipe(SHIPPED_DIR / f"{name}.yaml")
    task = get_task(recipe)
    rows = clean(read_dataset(recipe).frame, task).rows
    test = len(split_rows(rows, recipe, task.stratify_column(), task.split_groups(rows))["test"])
    scored = min(test, recipe.training.max_eval_samples or test)
    assert scored >= recipe.promotion.min_test_rows, f"{name} scores {scored} test rows: it could never promote"
