"""Bad input: each case fails with an actionable message and loses nothing.

A good run first materializes the whole chain (a tiny real BERT keeps it fast); then the recipe's
data file is replaced by a broken one and the group is materialized again. Every time, the error
names the file, row, column or setting, and the last good raw data and exported model stay as
they were, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import FILMS, NO_QUALITY_GATES, reviews, write_films_recipe
from dagster import DagsterInstance, materialize

from finetune_assets.data import sources
from finetune_assets.defs import build_definitions
from finetune_assets.models.positions import position_limit

GOOD_ROWS = [(f"I really loved moment number {i} of this film", "pos") for i in range(40)] + [
    (f"I truly hated scene number {i} of this film", "neg") for i in range(40)
]


def write_csv(path: Path, rows, encoding="utf-8"):
    pd.DataFrame(rows, columns=["review", "sentiment"]).to_csv(path, index=False, encoding=encoding)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("bad_input")
    recipe = {
        "task": "classification",
        "base_model": str(tiny_bert),
        "dataset": {
            "source": "reviews.csv",
            "columns": {"text": "review", "label": "sentiment"},
            "labels": ["negative", "positive"],
            "label_aliases": {"pos": "positive", "neg": "negative"},
        },
        "splits": {"validation": 0.2, "test": 0.2},
        "training": {"max_length": 32},
        "checks": NO_QUALITY_GATES,
    }
    (root / "films.yaml").write_text(yaml.safe_dump(recipe))
    write_csv(root / "reviews.csv", GOOD_ROWS)
    defs = build_definitions([root], str(root / "artifacts"))
    good = run(defs)
    assert good.success
    refs = root / "artifacts" / "refs" / "films"
    export_ref = (refs / "exported_model.json").read_text()
    export = Path(pd.read_json(refs / "exported_model.json", typ="series")["path"])
    raw = Path(pd.read_json(refs / "raw_dataset.json", typ="series")["path"])
    return root, defs, export_ref, export, digest(export), raw, raw.read_bytes()


def run(defs):
    return materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def failure_text(result) -> str:
    texts = [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
    texts += [e.description or "" for e in result.get_asset_check_evaluations() if not e.passed]
    return "\n".join(texts)


def write_missing(path):
    path.unlink()


def write_latin1(path):
    write_csv(path, GOOD_ROWS + [("café crème was délicieux", "pos")], encoding="latin-1")


def write_malformed(path):
    write_csv(path, GOOD_ROWS)
    with path.open("a") as handle:
        handle.write("a line,with,too many,fields\n")


def write_unclosed_quote(path):
    write_csv(path, GOOD_ROWS)
    with path.open("a") as handle:  # pandas' reader merged such a line with the next into one text
        handle.write('"I truly loved this film,pos\nI hated "the ending" of it,neg\n')


def write_renamed_columns(path):
    pd.DataFrame(GOOD_ROWS, columns=["body", "sentiment"]).to_csv(path, index=False)


def write_unknown_label(path):
    write_csv(path, GOOD_ROWS + [("a so-so film", "meh")])


def write_empty(path):
    path.write_bytes(b"")


def write_all_dropped(path):
    write_csv(path, [("   ", "pos"), ("<br />", "neg"), ("", "pos")])


def write_too_few_rows(path):
    write_csv(path, GOOD_ROWS[:1] + GOOD_ROWS[-1:])


CASES = {
    "missing file": (write_missing, ["reviews.csv", "not found"]),
    "latin-1 without encoding": (write_latin1, ["reviews.csv", "not valid utf-8", "dataset.encoding"]),
    "malformed csv line": (write_malformed, ["reviews.csv", "malformed csv", "line 82"]),
    "unclosed quote": (write_unclosed_quote, ["reviews.csv", "malformed csv", "line 82", "quoting"]),
    "columns named differently": (write_renamed_columns, ["column 'review'", "'body'", "dataset.columns.text"]),
    "label outside the mapping": (
        write_unknown_label,
        ["label outside the recipe's mapping", "row 80: 'meh'", "dataset.label_aliases"],
    ),
    "empty file": (write_empty, ["reviews.csv", "empty"]),
    "all rows dropped": (write_all_dropped, ["cleaning dropped every row", "empty text"]),
    "a split left empty": (write_too_few_rows, ["leave", "empty", "split fractions"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_clearly_and_loses_nothing(project, case):
    root, defs, export_ref, export, export_digest, raw, raw_bytes = project
    data = root / "reviews.csv"
    saved = data.read_bytes()
    write, expected = CASES[case]
    try:
        write(data)
        result = run(defs)
    finally:
        data.write_bytes(saved)
    assert not result.success
    message = failure_text(result)
    for fragment in expected:
        assert fragment.lower() in message.lower(), f"{case}: {fragment!r} not in {message}"
    materialized = {e.asset_key.path[1] for e in result.get_asset_materialization_events()}
    assert "finetuned_model" not in materialized and "exported_model" not in materialized
    assert (root / "artifacts" / "refs" / "films" / "exported_model.json").read_text() == export_ref
    assert digest(export) == export_digest
    assert raw.read_bytes() == raw_bytes


def test_latin1_file_reads_when_the_recipe_says_so(tmp_path):
    write_latin1(tmp_path / "reviews.csv")
    source = sources.resolve("reviews.csv", tmp_path)
    frame = sources.read_table(source, format=None, encoding="latin-1", hub_config=None, hub_split=None)
    assert "café crème was délicieux" in set(frame["review"])


def test_a_one_megabyte_text_is_dropped_with_a_receipt(project):
    root, defs, *_ = project
    data = root / "reviews.csv"
    saved = data.read_bytes()
    try:
        write_csv(data, GOOD_ROWS + [("word " * 200_000, "pos")])
        result = run(defs)
    finally:
        data.write_bytes(saved)
    assert result.success
    clean = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[1] == "clean_dataset"
    )
    assert clean["dropped_longer_than_max_chars"].value == 1
    assert clean["rows_out"].value == len(GOOD_ROWS)


def test_skipped_lines_are_listed_in_the_raw_dataset_metadata(tmp_path, tiny_bert):
    recipe = {
        "task": "classification",
        "base_model": str(tiny_bert),
        "dataset": {
            "source": "reviews.csv",
            "columns": {"text": "review", "label": "sentiment"},
            "labels": ["negative", "positive"],
            "label_aliases": {"pos": "positive", "neg": "negative"},
            "on_bad_lines": "skip",
        },
    }
    (tmp_path / "films.yaml").write_text(yaml.safe_dump(recipe))
    write_unclosed_quote(tmp_path / "reviews.csv")
    with (tmp_path / "reviews.csv").open("a") as handle:
        handle.write("one,field,too many\n")
    defs = build_definitions([tmp_path], str(tmp_path / "artifacts"))
    raw_asset = next(a for a in defs.assets if a.key.path[-1] == "raw_dataset")
    instance = DagsterInstance.ephemeral()
    result = materialize([raw_asset], resources=defs.resources, instance=instance)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    warnings = [entry.user_message for entry in instance.all_logs(result.run_id) if "skipped" in entry.user_message]
    assert len(warnings) == 2 and "reviews.csv line 82: broken quoting" in warnings[0]
    assert metadata["rows"].value == len(GOOD_ROWS) + 1  # the line after the unclosed quote is kept
    assert metadata["skipped_lines"].value == 2
    assert metadata["skipped_line_numbers"].value == "reviews.csv:82, reviews.csv:84"
    assert "broken quoting" in metadata["skipped_lines_table"].value
    receipt = Path(metadata["path"].value).parent / "skipped_lines.json"
    assert [row["line"] for row in json.loads(receipt.read_text())] == [82, 84]


def test_max_length_above_the_models_positions_fails_in_tokenized_splits_before_training(films_project):
    """The tiny BERT has 512 positions; asking for 100000 tokens stops the run before it trains."""
    recipes, artifacts = films_project
    reviews(0).to_csv(recipes / "data" / "reviews.csv", index=False)
    write_films_recipe(recipes, training={**FILMS["training"], "max_length": 100000})
    result = run(build_definitions([recipes], str(artifacts)))
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "tokenized_splits" in failure.step_key
    message = failure.event_specific_data.error.to_string()
    assert "training.max_length is 100000" in message and "at most 512 tokens" in message, message
    materialized = {e.asset_key.path[1] for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_dataset", "clean_dataset"}
    assert not (artifacts / "films" / "finetuned_model").exists()
    assert not (artifacts / "films" / "checkpoints").exists()


def test_the_position_limit_is_read_from_the_models_config(tmp_path, tiny_bert):
    from transformers import GPT2Config, RobertaConfig, T5Config

    assert position_limit(str(tiny_bert)) == 512
    for name, config, limit in (
        ("gpt2", GPT2Config(n_positions=64), 64),
        ("roberta", RobertaConfig(max_position_embeddings=514, pad_token_id=1), 512),  # positions after padding
        ("t5", T5Config(), None),  # relative positions: any length
    ):
        config.save_pretrained(tmp_path / name)
        assert position_limit(str(tmp_path / name)) == limit, name
