"""ChatterBot corpus files (``dataset.format: chatterbot``) as prompt/response rows.

A corpus file is YAML with ``categories`` and ``conversations``; in each conversation the first
item is the question and every following item one answer to it, so a conversation of n items
gives n - 1 rows. An entry without an answer (the corpus has a mis-indented one) gives one row with
an empty response, so cleaning drops it with a receipt instead of it vanishing here. The file name
and its categories are kept as columns, for reading the data.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from finetune_assets.errors import SourceError


def read_corpus(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Rows of every ``*.yml``/``*.yaml`` file in ``path`` (a folder or one file)."""
    files = sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml")) if path.is_dir() else [path]
    if not files:
        raise SourceError(f"{path}: folder holds no .yml/.yaml corpus file")
    rows = [row for file in files for row in _rows(file, encoding)]
    if not rows:
        raise SourceError(f"{path}: no conversation has a question and an answer")
    return pd.DataFrame(rows)


def _rows(file: Path, encoding: str) -> list[dict]:
    try:
        data = yaml.safe_load(file.read_text(encoding=encoding))
    except yaml.YAMLError as exc:
        raise SourceError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("conversations"), list):
        raise SourceError(f"{file}: a ChatterBot corpus file has a 'conversations:' list")
    category = ", ".join(map(str, data.get("categories") or []))
    rows = []
    for conversation in data["conversations"]:
        items = conversation if isinstance(conversation, list) and conversation else [conversation]
        question, *answers = ["" if item is None else str(item) for item in items]
        rows += [
            {"prompt": question, "response": answer, "category": category, "file": file.name}
            for answer in answers or [""]
        ]
    return rows
