"""The champion on disk: ``champion.json``, the ``current`` link and ``evaluation_history.jsonl``.

All three live in ``<artifacts root>/<recipe>/exported_model/``. Whoever changes them holds
:func:`locked` (an inter-process ``filelock``), so two runs deciding at once take turns: each reads
the champion the other may just have written. Writes go through unique temp names and one rename,
so a reader without the lock sees the old champion or the new one, never a torn file. A
``champion.json`` that is corrupt anyway (a disk fault, a hand edit) is recovered from the last
promotion in the history whose export folder is complete, or reported naming the file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from finetune_assets.errors import PromotionError
from finetune_assets.pipeline import caching
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.atomic import point_link, write_text
from finetune_assets.pipeline.stage_names import EXPORTED_MODEL
from finetune_assets.promotion.decision import was_promoted

CHAMPION, CURRENT, HISTORY, LOCK = "champion.json", "current", "evaluation_history.jsonl", ".champion.lock"


def exports_dir(root: Path, recipe: str) -> Path:
    return root / recipe / EXPORTED_MODEL


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the recipe's champion lock; temp files left by a writer that died are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / LOCK):
        for name in (CHAMPION, CURRENT):  # only lock holders write these temp files
            for leftover in folder.glob(f".{name}.*.tmp"):
                leftover.unlink(missing_ok=True)
        yield


def read(folder: Path, log=None, repair: bool = False) -> ArtifactRef | None:
    """The champion's ref, or None when there is none (or its folder was deleted).

    A corrupt ``champion.json`` is recovered from the history (and rewritten when ``repair``, which
    needs :func:`locked`); without a promotion to recover from, :class:`PromotionError` names it.
    """
    path = folder / CHAMPION
    try:
        champion = ArtifactRef.from_json(path.read_text())
        if not isinstance(champion.path, str) or not isinstance(champion.fingerprint, str):
            raise ValueError("path and fingerprint must be strings")
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:  # not JSON, not text, not a record
        champion = _last_promoted(folder)
        if champion is None:
            raise PromotionError(
                f"{path}: not a valid champion record ({type(exc).__name__}: {exc}), and {folder / HISTORY} "
                "names no promoted export whose folder is complete. Restore the file from a backup, or delete "
                "it to let the next export that passes the gate become champion."
            ) from None
        if log is not None:
            log.warning(f"{path} was corrupt ({exc}); recovered champion {champion.fingerprint} from {HISTORY}")
        if repair:
            write(folder, champion)
    return champion if Path(champion.path).exists() else None


def write(folder: Path, champion: ArtifactRef) -> None:
    """Name ``champion`` in ``champion.json`` and point ``current`` at its folder (hold :func:`locked`)."""
    write_text(folder / CHAMPION, champion.to_json())
    point_link(folder / CURRENT, Path(champion.path).name)


def history(folder: Path, entry: dict | None = None) -> list[dict]:
    """Every decision so far, after appending ``entry`` (hold :func:`locked` to append). A line
    that does not parse (a write cut short) is skipped, not fatal."""
    path = folder / HISTORY
    if entry is not None:
        with path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _last_promoted(folder: Path) -> ArtifactRef | None:
    """The newest promoted export in the history whose folder still holds its complete record."""
    for row in reversed(history(folder)):
        if was_promoted(row) and isinstance(row.get("fingerprint"), str):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                found = caching.load(folder / row["fingerprint"])
                if found:
                    return found[0]
    return None
