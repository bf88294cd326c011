"""Artifacts on disk and the small references that flow between assets.

Every large artifact (parquet table, tokenized splits, checkpoint, export) is a folder under the
artifacts root, named by its fingerprint and written atomically (:mod:`.atomic`), so an
interrupted run never leaves a half-written folder where a good one is expected. Assets hand each
other an :class:`ArtifactRef` (a path plus fingerprints), stored as JSON by the Dagster IO manager
(:mod:`finetune_assets.defs.resources`), never as a pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


def default_artifacts_root() -> Path:
    """``$FINETUNE_ARTIFACTS_DIR``, else ``$DAGSTER_HOME/artifacts``, else ``./dagster_home/artifacts``."""
    explicit = os.environ.get("FINETUNE_ARTIFACTS_DIR")
    if explicit:
        return Path(explicit)
    home = os.environ.get("DAGSTER_HOME") or Path(__file__).resolve().parents[2] / "dagster_home"
    return Path(home) / "artifacts"


@dataclass(frozen=True)
class ArtifactRef:
    """A pointer to one materialized artifact. ``lineage`` maps upstream asset names to their refs."""

    path: str
    fingerprint: str
    info: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArtifactRef:
        return cls(**json.loads(text))


def fingerprint(*parts: object) -> str:
    """A short stable hash of JSON-serialisable parts (upstream fingerprints, settings, versions)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_folder(root: Path, recipe: str, stage: str, fingerprint: str) -> Path:
    """Where one stage's artifact of one recipe lives: ``<root>/<recipe>/<stage>/<fingerprint>``."""
    return root / recipe / stage / fingerprint


def checkpoint_folder(root: Path, recipe: str, fingerprint: str) -> Path:
    """Where a training of this fingerprint keeps its checkpoints until it completes:
    ``<root>/<recipe>/checkpoints/<fingerprint>``, outside any staging folder, so a failed attempt
    leaves them for the next one."""
    return root / recipe / "checkpoints" / fingerprint
