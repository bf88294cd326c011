"""Cleaning with receipts (classification) and pandera validation of the cleaned rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finetune_assets.data.cleaning import Cleaned, clean
from finetune_assets.defs.metadata import column_schema
from finetune_assets.errors import DataError
from finetune_assets.tasks import get_task


def frame(*rows) -> pd.DataFrame:
    """Rows as (review, sentiment) pairs, in the source columns the test recipe maps from."""
    return pd.DataFrame({"review": [r[0] for r in rows], "sentiment": [r[1] for r in rows]}, dtype=object)


def texts(cleaned: Cleaned) -> list[str]:
    return cleaned.rows["text"].tolist()


def dropped_texts(cleaned: Cleaned, reason: str) -> list[str]:
    return cleaned.dropped[reason]["text"].tolist()


def test_output_columns_and_types(make_recipe):
    cleaned = clean(frame(("fine film", "pos"), ("dull film", "neg")), get_task(make_recipe()))
    assert list(cleaned.rows.columns) == ["text", "label"]
    assert cleaned.rows["label"].dtype == np.int64
    assert cleaned.rows.to_dict("records") == [{"text": "fine film", "label": 1}, {"text": "dull film", "label": 0}]
    assert list(cleaned.rows.index) == [0, 1]


def test_html_removed(make_recipe):
    cleaned = clean(
        frame(
            ("great<br />movie", "pos"),
            ("<p>Loved <b>it</b></p>", "pos"),
            ("fish &amp; chips", "neg"),
            ("2 < 3 and 5 > 4", "neg"),
        ),
        get_task(make_recipe()),
    )
    assert texts(cleaned) == ["great movie", "Loved it", "fish & chips", "2 < 3 and 5 > 4"]


def test_whitespace_collapsed(make_recipe):
    cleaned = clean(
        frame(("  many   spaces\there\n\nand lines  ", "pos"), ("no\u00a0break", "neg")), get_task(make_recipe())
    )
    assert texts(cleaned) == ["many spaces here and lines", "no break"]


def test_nfkc_normalisation(make_recipe):
    cleaned = clean(
        frame(("ｆｕｌｌｗｉｄｔｈ", "pos"), ("\ufb01ne", "neg"), ("x\u00b2", "pos")), get_task(make_recipe())
    )
    assert texts(cleaned) == ["fullwidth", "fine", "x2"]


def test_empty_rows_dropped(make_recipe):
    raw = frame(("kept", "pos"), ("", "pos"), ("   \t\n", "neg"), (None, "neg"), ("<br />", "pos"))
    cleaned = clean(raw, get_task(make_recipe()))
    assert texts(cleaned) == ["kept"]
    assert cleaned.counts()["empty text"] == 4
    assert sorted(cleaned.dropped["empty text"].index) == [1, 2, 3, 4]  # receipts keep the raw row index


def test_exact_duplicates_dropped(make_recipe):
    raw = frame(("same words", "pos"), ("other", "neg"), ("same   words", "positive"), ("same words", 1))
    cleaned = clean(raw, get_task(make_recipe()))
    assert texts(cleaned) == ["same words", "other"]
    assert cleaned.counts()["exact duplicate"] == 2
    assert list(cleaned.dropped["exact duplicate"].index) == [2, 3]


def test_conflicting_duplicates_all_copies_dropped(make_recipe):
    raw = frame(("who knows", "pos"), ("clear", "neg"), ("who knows", "neg"), ("who  knows", "pos"))
    cleaned = clean(raw, get_task(make_recipe()))
    assert texts(cleaned) == ["clear"]
    assert "who knows" not in texts(cleaned)
    conflicting = cleaned.dropped["conflicting duplicate"]
    assert conflicting["text"].tolist() == ["who knows", "who knows"]
    assert sorted(conflicting["label"]) == [0, 1]
    # the third copy repeats row 0 exactly and is counted as an exact duplicate first
    assert cleaned.counts()["exact duplicate"] == 1


def test_label_mapping(make_recipe):
    raw = frame(
        ("a", "pos"),
        ("b", "positive"),
        ("c", 1),
        ("d", "1"),
        ("e", " Positive "),
        ("f", "neg"),
        ("g", 0),
        ("h", "NEGATIVE"),
        ("i", 1.0),
        ("j", np.int64(0)),
    )
    cleaned = clean(raw, get_task(make_recipe()))
    assert dict(zip(texts(cleaned), cleaned.rows["label"])) == {
        "a": 1,
        "b": 1,
        "c": 1,
        "d": 1,
        "e": 1,
        "f": 0,
        "g": 0,
        "h": 0,
        "i": 1,
        "j": 0,
    }


def test_excluded_labels_dropped(make_recipe):
    raw = frame(("good", "pos"), ("meh", "neutral"), ("bad", "neg"), ("so so", " Neutral"))
    cleaned = clean(raw, get_task(make_recipe()))
    assert texts(cleaned) == ["good", "bad"]
    assert dropped_texts(cleaned, "label excluded by recipe") == ["meh", "so so"]
    assert cleaned.counts()["label excluded by recipe"] == 2


def test_raw_frame_not_modified(make_recipe):
    raw = frame(
        ("great<br />movie", "pos"),
        ("  spaced   out ", " Positive "),
        ("", "neg"),
        ("dup", 0),
        ("dup", 0),
        ("meh", "neutral"),
        ("ｆｕｌｌ", 1),
    )
    raw["extra"] = range(len(raw))
    before = raw.copy(deep=True)
    clean(raw, get_task(make_recipe()))
    pd.testing.assert_frame_equal(raw, before)


def test_unknown_label_names_row_and_value(make_recipe):
    raw = frame(("a", "pos"), ("b", "neg"), ("c", "maybe"))
    with pytest.raises(DataError) as info:
        clean(raw, get_task(make_recipe()))
    message = str(info.value)
    assert "row 2" in message
    assert "'maybe'" in message
    assert "label_aliases" in message


def test_missing_column_named_with_existing_columns(make_recipe):
    raw = pd.DataFrame({"body": ["a", "b"], "sentiment": ["pos", "neg"]})
    with pytest.raises(DataError) as info:
        clean(raw, get_task(make_recipe()))
    message = str(info.value)
    assert "'review'" in message
    assert "'body'" in message and "'sentiment'" in message
    assert "dataset.columns.text" in message


def test_missing_label_column(make_recipe):
    raw = pd.DataFrame({"review": ["a", "b"], "stars": [1, 5]})
    with pytest.raises(DataError, match="'sentiment'") as info:
        clean(raw, get_task(make_recipe()))
    assert "'stars'" in str(info.value)


def test_every_row_dropped_is_an_error(make_recipe):
    with pytest.raises(DataError, match="every row"):
        clean(frame(("", "pos"), ("  ", "neg"), ("x", "neutral")), get_task(make_recipe()))


def test_every_row_excluded_is_an_error(make_recipe):
    with pytest.raises(DataError, match="every row"):
        clean(frame(("a", "neutral"), ("b", "neutral")), get_task(make_recipe()))


def test_huge_text_dropped_by_default(make_recipe):
    huge = ("word <i>tag</i> " * 70_000)[:1_000_000]
    assert len(huge) == 1_000_000
    cleaned = clean(frame(("normal", "pos"), (huge, "neg")), get_task(make_recipe()))
    assert texts(cleaned) == ["normal"]
    assert cleaned.counts()["longer than max_chars"] == 1
    assert len(cleaned.dropped["longer than max_chars"]["text"].iloc[0]) > 20_000


def test_min_chars(make_recipe):
    cleaned = clean(frame(("ok", "pos"), ("long enough", "neg")), get_task(make_recipe(cleaning={"min_chars": 3})))
    assert texts(cleaned) == ["long enough"]
    assert dropped_texts(cleaned, "shorter than min_chars") == ["ok"]


# --- every rule can be switched off --------------------------------------------------------------


def test_strip_html_off(make_recipe):
    cleaned = clean(frame(("great<br />movie", "pos")), get_task(make_recipe(cleaning={"strip_html": False})))
    assert texts(cleaned) == ["great<br />movie"]


def test_normalize_whitespace_off(make_recipe):
    cleaned = clean(frame(("  two  spaces ", "pos")), get_task(make_recipe(cleaning={"normalize_whitespace": False})))
    assert texts(cleaned) == ["  two  spaces "]


def test_unicode_normalization_off_and_nfc(make_recipe):
    raw = frame(("ｆｕｌｌ", "pos"), ("cafe\u0301", "neg"))
    off = clean(raw, get_task(make_recipe(cleaning={"unicode_normalization": None})))
    assert texts(off) == ["ｆｕｌｌ", "cafe\u0301"]
    nfc = clean(raw, get_task(make_recipe(cleaning={"unicode_normalization": "NFC"})))
    assert texts(nfc) == ["ｆｕｌｌ", "caf\u00e9"]


def test_drop_empty_off(make_recipe):
    cleaned = clean(
        frame(("kept", "pos"), ("", "neg")), get_task(make_recipe(cleaning={"drop_empty": False, "min_chars": 0}))
    )
    assert texts(cleaned) == ["kept", ""]
    assert "empty text" not in cleaned.dropped


def test_drop_empty_off_still_caught_by_min_chars(make_recipe):
    cleaned = clean(frame(("kept", "pos"), ("", "neg")), get_task(make_recipe(cleaning={"drop_empty": False})))
    assert texts(cleaned) == ["kept"]
    assert dropped_texts(cleaned, "shorter than min_chars") == [""]


def test_drop_duplicates_off(make_recipe):
    cleaned = clean(
        frame(("dup", "pos"), ("dup", "pos")),
        get_task(make_recipe(cleaning={"drop_duplicates": False, "drop_near_duplicates": False})),
    )
    assert texts(cleaned) == ["dup", "dup"]


def test_near_duplicates_ignore_case_punctuation_and_spacing(make_recipe):
    cleaned = clean(
        frame(("Great movie!", "pos"), ("great   MOVIE", "pos"), ("Other film", "neg")), get_task(make_recipe())
    )
    assert texts(cleaned) == ["Great movie!", "Other film"]
    assert cleaned.counts()["near duplicate"] == 1
    kept = clean(
        frame(("Great movie!", "pos"), ("great movie", "pos")),
        get_task(make_recipe(cleaning={"drop_near_duplicates": False})),
    )
    assert len(kept.rows) == 2


def test_conflicts_are_found_on_normalised_text(make_recipe):
    cleaned = clean(frame(("Great movie!", "pos"), ("great movie", "neg"), ("fine", "pos")), get_task(make_recipe()))
    assert texts(cleaned) == ["fine"]
    assert cleaned.counts()["conflicting duplicate"] == 2


def test_drop_conflicting_duplicates_off(make_recipe):
    cleaned = clean(
        frame(("dup", "pos"), ("dup", "neg")), get_task(make_recipe(cleaning={"drop_conflicting_duplicates": False}))
    )
    assert cleaned.rows.to_dict("records") == [{"text": "dup", "label": 1}, {"text": "dup", "label": 0}]


def test_max_chars_off_and_custom(make_recipe):
    raw = frame(("short", "pos"), ("x" * 30_000, "neg"))
    assert len(clean(raw, get_task(make_recipe(cleaning={"max_chars": None}))).rows) == 2
    cleaned = clean(raw, get_task(make_recipe(cleaning={"max_chars": 5})))
    assert texts(cleaned) == ["short"]


# --- schema metadata ---------------------------------------------------------------------------


def test_column_schema_metadata_lists_the_task_columns(make_recipe):
    metadata = column_schema(get_task(make_recipe()).schema())
    assert set(metadata) == {"dagster/column_schema"}
    assert {column.name for column in metadata["dagster/column_schema"].columns} == {"text", "label"}
