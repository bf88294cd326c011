"""CSV and JSON Lines read strictly, so that a malformed line is named instead of merged into a row.

pandas' CSV reader is lenient: an unclosed quote swallows the lines after it into one text, and a
row missing a field gets an empty one; either way a model trains on a row nobody wrote. Here
every CSV record must parse under Python's ``csv`` module with ``strict=True`` (a quoted field ends
with a quote followed by the delimiter or the line's end) and hold as many fields as the header;
quoted fields may still span lines. Every JSON Lines line must be one JSON object. What breaks
that is a :class:`BadLine`, numbered as an editor numbers lines: an error under
``dataset.on_bad_lines: error`` (the default), a receipt under ``skip``. A record with broken
quoting loses only its first line: reading restarts on the next one, so an unclosed quote never
takes the rest of the file with it. Decoding errors name the byte offset in the file and its line.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from finetune_assets.errors import SourceError

SHOWN_CHARS = 120  # of a bad line, in messages and receipts


@dataclass(frozen=True)
class BadLine:
    file: str
    line: int  # 1-based, counting "\n" as an editor does
    last_line: int  # the same for a one-line record
    problem: str
    text: str  # the start of the line as read

    def where(self) -> str:
        return f"line {self.line}" if self.last_line == self.line else f"lines {self.line}-{self.last_line}"

    def receipt(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "last_line": self.last_line,
            "problem": self.problem,
            "text": self.text,
        }


def decode(path: Path, encoding: str) -> str:
    """The file's text; bytes invalid in ``encoding`` are reported by their offset in the file."""
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except LookupError:
        raise SourceError(
            f"{path}: dataset.encoding '{encoding}' is not an encoding Python knows; use a name "
            "such as utf-8, latin-1 or cp1252"
        ) from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(
            f"{path}: byte {exc.start} (offset from the file's start, on line {line}: "
            f"{data[exc.start : exc.end]!r}) is not valid {encoding} ({exc.reason}); set dataset.encoding in the "
            "recipe to the file's encoding (for example latin-1)"
        ) from None
    return text.removeprefix("\ufeff")  # a byte-order mark is not part of the first column's name


def read_csv(path: Path, text: str, on_bad_lines: str) -> tuple[pd.DataFrame, list[BadLine]]:
    """The rows of a CSV text (every value a string, as written) and the lines skipped."""
    lines = io.StringIO(text, newline="").readlines()  # split at \n, \r\n and \r, ends kept
    numbers = list(itertools.accumulate((line.count("\n") for line in lines), initial=1))
    header, rows, bad = None, [], []

    def bad_line(first: int, last: int, problem: str) -> None:
        found = BadLine(str(path), numbers[first], numbers[last], problem, lines[first][:SHOWN_CHARS].rstrip())
        if header is None or on_bad_lines == "error":
            raise SourceError(
                f"{path}: {found.where()}: malformed csv: {problem} ({found.text!r}); fix it, or set "
                "dataset.on_bad_lines: skip to drop such lines with a receipt"
            )
        bad.append(found)

    start = 0
    with _no_field_size_limit(len(text)):
        while start < len(lines):
            reader = csv.reader((lines[i] for i in range(start, len(lines))), strict=True)
            while True:
                first = start + reader.line_num
                try:
                    record = next(reader)
                except StopIteration:
                    start = len(lines)
                    break
                except csv.Error as exc:  # only this line is dropped: reading resumes on the next
                    noticed = numbers[start + reader.line_num - 1]
                    bad_line(
                        first,
                        first,
                        f"broken quoting ({exc}, noticed on line {noticed}): a quoted field "
                        "must end with a quote followed by a comma or the line's end, and a quote inside "
                        'it is written twice ("")',
                    )
                    start = first + 1
                    break
                last = start + reader.line_num - 1
                if not record or (len(record) == 1 and not record[0].strip() and header and len(header) > 1):
                    continue  # a blank line
                if header is None:
                    header = _column_names(path, record)
                elif len(record) != len(header):
                    bad_line(first, last, f"{len(record)} fields where the header has {len(header)}")
                else:
                    rows.append(record)
    return pd.DataFrame(rows, columns=header or []), bad


def read_jsonl(path: Path, text: str, on_bad_lines: str) -> tuple[pd.DataFrame, list[BadLine]]:
    """The records of a JSON Lines text (one object per line) and the lines skipped."""
    records, bad = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            problem = f"not valid JSON ({exc.msg} at column {exc.colno})"
        else:
            if isinstance(value, dict):
                records.append(value)
                continue
            problem = f"a JSON {type(value).__name__}, not an object"
        found = BadLine(str(path), number, number, problem, line[:SHOWN_CHARS].rstrip())
        if on_bad_lines == "error":
            raise SourceError(
                f"{path}: line {number}: malformed jsonl: {problem} ({found.text!r}); fix it, or set "
                "dataset.on_bad_lines: skip to drop such lines with a receipt"
            )
        bad.append(found)
    return pd.DataFrame.from_records(records), bad


def _column_names(path: Path, header: list[str]) -> list[str]:
    names = [name if name.strip() else f"Unnamed: {i}" for i, name in enumerate(header)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SourceError(
            f"{path}: line 1: column name(s) {repeated} appear more than once in the header; "
            "rename them so each column can be mapped"
        )
    return names


@contextlib.contextmanager
def _no_field_size_limit(size: int) -> Iterator[None]:
    """``csv`` refuses fields over 128 KiB by default; a long text is cleaning's call, not the reader's."""
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, size + 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)
