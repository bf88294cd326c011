"""Checkpoints of one training, and which of them may be resumed.

The Trainer writes ``checkpoint-<step>`` folders (weights or adapter, optimizer, scheduler, each
process's RNG state, the data position in ``trainer_state.json``) into a folder the pipeline keys
by the training's fingerprint and keeps outside the staging folder, so a crash loses at most one
save interval and a re-run resumes with the Trainer's own ``resume_from_checkpoint``. This module
decides what may be resumed, because resuming with other data or settings silently trains the
wrong model:

- a folder holds the checkpoints of one training only: :data:`MARKER` names its fingerprint and
  process count, and a folder whose checkpoints belong to another is refused, never resumed and
  never overwritten;
- the newest *complete* checkpoint is resumed: the Trainer writes ``trainer_state.json`` last, so
  a checkpoint whose state file is missing or unreadable was cut short, and it is removed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from finetune_assets.errors import RecipeError

MARKER = "training.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint folder, newest first."""
    found = [
        (int(m.group(1)), path)
        for path in folder.glob("checkpoint-*")
        if path.is_dir() and (m := _CHECKPOINT.match(path.name))
    ]
    return sorted(found, reverse=True)


def _complete(checkpoint: Path, step: int) -> bool:
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return state.get("global_step") == step


def claim(folder: Path, fingerprint: str, processes: int) -> None:
    """Make sure ``folder`` holds no checkpoints but this training's; raises :class:`RecipeError`
    (naming both trainings and what to do) when it holds another's."""
    marker = folder / MARKER
    if not _checkpoints(folder):
        return
    owner = json.loads(marker.read_text()) if marker.is_file() else {}
    if owner.get("fingerprint") != fingerprint:
        raise RecipeError(
            f"{folder} holds checkpoints of another training (fingerprint {owner.get('fingerprint', 'unknown')}, "
            f"this one is {fingerprint}): its data or settings differ, so they are not resumed. Pass another "
            "checkpoint folder, or delete this one to let it go"
        )
    if owner.get("processes") != processes:
        raise RecipeError(
            f"{folder}: its checkpoints were written by {owner.get('processes')} process(es) and this launch "
            f"has {processes}; the Trainer resumes each process's RNG and data position, so launch as many "
            "(compute.processes) or delete the folder to start over"
        )


def mark(folder: Path, fingerprint: str, processes: int) -> None:
    """Record whose checkpoints ``folder`` holds (rank 0, before the first checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps({"fingerprint": fingerprint, "processes": processes}))


def newest_complete(folder: Path) -> tuple[int, Path] | None:
    """The step and folder of the newest complete checkpoint, or None."""
    for step, path in _checkpoints(folder):
        if _complete(path, step):
            return step, path
    return None


def drop_incomplete(folder: Path) -> list[Path]:
    """Remove checkpoints newer than the newest complete one (cut short by a crash); return them."""
    newest = newest_complete(folder)
    cut = [path for step, path in _checkpoints(folder) if newest is None or step > newest[0]]
    for path in cut:
        shutil.rmtree(path, ignore_errors=True)
    return cut
