"""Nested fields in JSON rows: a column mapping may name ``field.subfield``.

Many jsonl corpora keep their text inside objects and lists (ACLSum: ``{"sentences": {"abstract":
[...]}, "summary": {"challenge": ..., ...}}``). Rather than asking users to preprocess such files,
a recipe maps ``document: sentences.abstract``; :func:`with_nested_columns` adds each dotted path as
a column before columns are checked, and :func:`as_text` turns list and object values into text.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import pandas as pd


def with_nested_columns(frame: pd.DataFrame, paths: Iterable[str]) -> pd.DataFrame:
    """``frame`` plus a column for each dotted path that reaches into an object column.

    Paths that are already columns, or whose first part is not a column, are left alone, so the
    usual "column not found" error still names them. ``frame`` itself is not modified.
    """
    added = {}
    for path in paths:
        head, _, rest = path.partition(".")
        if path not in frame.columns and rest and head in frame.columns:
            added[path] = frame[head].map(functools.partial(_lookup, keys=rest.split(".")))
    return frame.assign(**added) if added else frame


def as_text(value):
    """Lists of sentences joined by spaces, objects' values joined in order; anything else as is."""
    if isinstance(value, dict):
        return " ".join(str(as_text(part)) for part in value.values())
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(str(as_text(part)) for part in value)
    return value


def _lookup(value, keys: list[str]):
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None  # a row without the field: cleaning drops it as empty text
        value = value[key]
    return value
