"""Cleaning with receipts: every dropped row is kept, grouped by the reason it was dropped.

The rules are the same for every task family; they act on the task's text columns and on every
turn of its conversation columns (earlier turns of a chat, JSON), so an empty or overlong turn, or
a conversation repeated in other words, is caught like a text. The task family contributes only
the conversion to its canonical columns (e.g. label mapping).
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from finetune_assets.data.formats.nested import with_nested_columns
from finetune_assets.errors import DataError

if TYPE_CHECKING:
    from finetune_assets.tasks.base import TaskFamily

_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]{0,200}?/?\s*>")
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass
class Cleaned:
    rows: pd.DataFrame
    dropped: dict[str, pd.DataFrame] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {reason: len(frame) for reason, frame in self.dropped.items()}


def check_columns(raw: pd.DataFrame, task: TaskFamily) -> None:
    """Fail early, naming the missing column and the ones the file does have."""
    recipe = task.recipe
    for column in task.required_columns:
        source = recipe.dataset.columns.get(column, column)
        if source not in raw.columns:
            raise DataError(
                f"{recipe.dataset.source}: column '{source}' (the task's '{column}') not found; the data "
                f"has columns {list(raw.columns)}. Set dataset.columns.{column} in {recipe.source_file.name}"
            )


def clean(raw: pd.DataFrame, task: TaskFamily, log=None) -> Cleaned:
    """Canonical columns, cleaned text, what the family writes itself (:meth:`complete_rows`, with
    progress on ``log``), then each enabled rule in a fixed order. ``raw`` itself is not modified."""
    recipe = task.recipe
    raw = task.unpack_records(with_nested_columns(raw, recipe.dataset.columns.values()))
    check_columns(raw, task)
    rows, dropped = task.canonical_rows(raw)
    rules = recipe.cleaning
    for column in task.text_columns:
        rows[column] = rows[column].map(lambda value: _clean_text(value, rules))
    for column in task.conversation_columns:
        rows[column] = rows[column].map(lambda value: _map_turns(value, lambda text: _clean_text(text, rules)))
    rows = task.complete_rows(rows, log)
    steps = task.row_rules()
    if rules.drop_empty:
        steps.append(("empty text", lambda f: (_needed_lengths(f, task) == 0).any(axis=1)))
    steps.append(("shorter than min_chars", lambda f: _needed_lengths(f, task).min(axis=1) < rules.min_chars))
    if rules.max_chars:
        steps.append(("longer than max_chars", lambda f: _lengths(f, task).max(axis=1) > rules.max_chars))
    if rules.drop_duplicates:
        steps.append(("exact duplicate", lambda f: f.duplicated(keep="first")))
    if rules.drop_near_duplicates:
        steps.append(("near duplicate", lambda f: _keyed(f, task).duplicated(keep="first")))
    if rules.drop_conflicting_duplicates and len(task.required_columns) > len(task.text_columns):
        steps.append(("conflicting duplicate", lambda f: _conflicts(f, task)))
    for reason, select in steps:
        mask = select(rows)
        dropped[reason] = rows[mask]
        rows = rows[~mask]
    if rows.empty:
        counts = {reason: len(frame) for reason, frame in dropped.items() if len(frame)}
        raise DataError(
            f"{recipe.dataset.source}: cleaning dropped every row ({counts}); relax the "
            f"cleaning settings in {recipe.source_file.name} or check the column mapping"
        )
    return Cleaned(rows=rows.reset_index(drop=True), dropped=dropped)


def _clean_text(value, rules) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    if rules.unicode_normalization:
        text = unicodedata.normalize(rules.unicode_normalization, text)
    if rules.strip_html:
        text = html.unescape(_TAG.sub(" ", text))
    if rules.normalize_whitespace:
        text = _SPACE.sub(" ", text).strip()
    return text


def comparison_key(text: str) -> str:
    """Text as compared for duplicates and leakage: case, punctuation and spacing ignored."""
    return _NOT_WORD.sub(" ", text.casefold()).strip()


def _keyed(frame: pd.DataFrame, task: TaskFamily) -> pd.DataFrame:
    """The rows with their text columns (and every turn's text) replaced by comparison keys."""
    keyed = frame.copy()
    for column in task.text_columns:
        keyed[column] = keyed[column].map(comparison_key)
    for column in task.conversation_columns:
        keyed[column] = keyed[column].map(lambda value: _map_turns(value, comparison_key))
    return keyed


def _lengths(frame: pd.DataFrame, task: TaskFamily) -> pd.DataFrame:
    """Characters per text column, and the shortest and longest turn of each conversation column
    (missing when it has no turns)."""
    lengths = frame[list(task.text_columns)].apply(lambda column: column.str.len())
    for column in task.conversation_columns:
        turns = frame[column].map(lambda value: [len(turn["content"]) for turn in _turns(value)])
        lengths[f"{column} shortest turn"] = turns.map(lambda sizes: min(sizes, default=None))
        lengths[f"{column} longest turn"] = turns.map(lambda sizes: max(sizes, default=None))
    return lengths


def _needed_lengths(frame: pd.DataFrame, task: TaskFamily) -> pd.DataFrame:
    """:func:`_lengths` without the cells the task leaves empty on purpose (``TaskFamily.may_be_empty``)."""
    lengths = _lengths(frame, task)
    optional = task.may_be_empty(frame)
    if optional is None:
        return lengths
    return lengths.mask(optional.reindex(columns=lengths.columns, fill_value=False) & (lengths == 0))


def _turns(value: str) -> list[dict]:
    return json.loads(value) if value else []


def _map_turns(value: str, change) -> str:
    """A conversation column's JSON with ``change`` applied to each turn's text."""
    return json.dumps([{**turn, "content": change(turn["content"])} for turn in _turns(value)], ensure_ascii=False)


def _conflicts(frame: pd.DataFrame, task: TaskFamily) -> pd.Series:
    """Rows whose text appears again with a different target: no target can be trusted, drop all."""
    keys = list(task.text_columns)
    targets = [c for c in task.required_columns if c not in keys]
    distinct = _keyed(frame, task).groupby(keys)[targets].transform("nunique").max(axis=1)
    return distinct > 1
