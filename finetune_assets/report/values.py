"""Metadata values that are more than a number or a string: markdown, a file path, JSON.

Stages and task families describe what they made with these small types rather than Dagster's,
so the same figures are cached as JSON next to an artifact, can be reported by a separate
process, and become Dagster metadata in one place (:mod:`finetune_assets.defs.metadata`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Markdown:
    """Rendered as markdown in the UI (tables, inline plots)."""

    text: str


@dataclass(frozen=True)
class FilePath:
    """A file or folder on disk."""

    path: str


@dataclass(frozen=True)
class Json:
    """Structured data shown as collapsible JSON."""

    data: Any


KINDS = {"md": Markdown, "path": FilePath, "json": Json}


def to_record(value):
    """``value`` as plain JSON data: numbers, text and booleans as they are, the types above tagged."""
    for kind, cls in KINDS.items():
        if isinstance(value, cls):
            return {"__kind__": kind, "value": next(iter(value.__dict__.values()))}
    return value


def from_record(value):
    """The inverse of :func:`to_record`."""
    if isinstance(value, dict) and "__kind__" in value:
        return KINDS[value["__kind__"]](value["value"])
    return value


def rounded(value):
    """``value`` as a person should read it: a float to 4 significant digits, never losing a whole
    digit (0.8837761519702221 -> 0.8838, 1234.56 -> 1235.0); lists and dicts inside, recursively;
    anything else unchanged. For display only: files keep full precision."""
    if type(value) is dict:  # plain containers only: a library's record types stay as they are
        return {key: rounded(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(rounded(item) for item in value)
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, numbers.Integral)
        or not math.isfinite(value)
        or value == 0
    ):
        return value
    return round(float(value), max(3 - math.floor(math.log10(abs(value))), 0))
