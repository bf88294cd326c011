"""The shipped reward functions: programs that score one completion, verifiably, between 0 and 1.

Each entry of :data:`SHIPPED` is a factory: it takes the options a recipe gives the function
(``reward.functions[i].options``), checks them once (a bad regular expression or JSON schema stops
the recipe before anything runs) and returns the scorer ``score(completion, row) -> float``, where
``row`` holds the prompt and the data fields of the prompt's row (e.g. ``answer``).

- ``exact_answer``: 1 when the completion's final answer equals the row's (``field``, default
  ``answer``), else 0. ``kind: number`` reads the last number in the completion (thousands commas
  dropped) and compares it with the row's number; ``kind: text`` reads what follows the last
  ``answer:`` (any case), else the last non-empty line, and compares it case-, space- and
  edge-punctuation-insensitively. ``pattern`` (a regular expression with one group) extracts the
  answer instead, e.g. ``<answer>(.*?)</answer>``: the last match counts.
- ``regex``: 1 when ``pattern`` matches anywhere in the completion (``.`` matches newlines), else 0.
- ``length_band``: 1 when the completion has ``min_chars`` to ``max_chars`` characters (stripped),
  else 0.
- ``json_schema``: 1 when the completion (stripped, without a surrounding Markdown code fence)
  parses as JSON and validates against ``schema`` (JSON Schema, draft 2020-12, by the
  ``jsonschema`` package), else 0.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

Scorer = Callable[[str, dict], float]

_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_ANSWER_MARK = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*", re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)
_EDGE_PUNCTUATION = " \t\n.,;:!?\"'`()[]{}*_"


def number_in(text: str) -> float | None:
    """The last number written in ``text`` (``1,250`` is 1250), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def normalized(text: str) -> str:
    """``text`` compared loosely: case folded, runs of space as one, punctuation at the edges off."""
    return " ".join(str(text).casefold().split()).strip(_EDGE_PUNCTUATION)


def final_text(completion: str) -> str:
    """What follows the last ``answer:`` (or ``answer is``) in ``completion``, else its last non-empty line."""
    marks = list(_ANSWER_MARK.finditer(completion))
    after = completion[marks[-1].end() :].strip() if marks else ""
    lines = [line for line in (after or completion).splitlines() if line.strip()]
    return (lines[0] if after else lines[-1]) if lines else ""


def exact_answer(field: str = "answer", kind: str = "number", pattern: str | None = None) -> Scorer:
    """1 when the completion's extracted final answer equals ``row[field]`` (see the module's docstring)."""
    if kind not in ("number", "text"):
        raise ValueError(f"kind is number or text, not {kind!r}")
    extract = re.compile(pattern, re.DOTALL) if pattern else None
    if extract is not None and extract.groups != 1:
        raise ValueError(f"pattern {pattern!r} needs exactly one group (the answer), it has {extract.groups}")

    def score(completion: str, row: dict) -> float:
        if field not in row:
            raise KeyError(f"the row has no field {field!r} (it has {sorted(row)})")
        said = completion
        if extract is not None:
            matches = extract.findall(completion)
            if not matches:
                return 0.0
            said = matches[-1]
        if kind == "number":
            got, want = number_in(said), number_in(str(row[field]))
            return float(got is not None and want is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9))
        text = said if extract is not None else final_text(said)
        return float(normalized(text) == normalized(row[field]))

    return score


def regex(pattern: str) -> Scorer:
    """1 when ``pattern`` matches anywhere in the completion."""
    compiled = re.compile(pattern, re.DOTALL)
    return lambda completion, row: float(compiled.search(completion) is not None)


def length_band(max_chars: int, min_chars: int = 0) -> Scorer:
    """1 when the stripped completion has between ``min_chars`` and ``max_chars`` characters."""
    if not 0 <= min_chars <= max_chars:
        raise ValueError(f"needs 0 <= min_chars <= max_chars, got min_chars={min_chars}, max_chars={max_chars}")
    return lambda completion, row: float(min_chars <= len(completion.strip()) <= max_chars)


def json_schema(schema: dict) -> Scorer:
    """1 when the completion is JSON that ``schema`` accepts."""
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)

    def score(completion: str, row: dict) -> float:
        text = completion.strip()
        fenced = _FENCE.match(text)
        try:
            value = json.loads(fenced.group(1) if fenced else text)
        except ValueError:
            return 0.0
        return float(validator.is_valid(value))

    return score


SHIPPED: dict[str, Callable[..., Scorer]] = {
    "exact_answer": exact_answer,
    "regex": regex,
    "length_band": length_band,
    "json_schema": json_schema,
}
