"""Fingerprint caching: a stage whose inputs did not change reuses its artifact in seconds.

A stage's fingerprint (:meth:`finetune_assets.pipeline.chain.Stage.fingerprint`) hashes its
upstream fingerprints, the recipe sections it reads and its code version. Its folder is named by
that fingerprint and carries ``artifact.json`` (the ref and the metadata it was materialized with),
written inside the atomic folder, so a folder that exists is complete and can be reused as it is.
This module stays light (no torch, no transformers) so a fully cached run does not pay for them.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.report.values import from_record, to_record

RECORD = "artifact.json"


def ancestry(**upstream: ArtifactRef) -> dict:
    """Every artifact upstream of these refs, by asset name: the chain back to the raw data."""
    found: dict = {}
    for name, ref in upstream.items():
        found.update(ref.lineage)
        found[name] = {"path": ref.path, "fingerprint": ref.fingerprint, **ref.info}
    return found


def save(staging: Path, ref: ArtifactRef, metadata: dict) -> None:
    """Record the ref and the metadata inside the artifact's (staging) folder."""
    record = {
        "ref": json.loads(ref.to_json()),
        "metadata": {key: to_record(value) for key, value in metadata.items() if value is not None},
    }
    (staging / RECORD).write_text(json.dumps(record, indent=1))


def load(folder: Path) -> tuple[ArtifactRef, dict] | None:
    """The ref and metadata of a complete artifact in ``folder``, or None."""
    record_file = folder / RECORD
    if not record_file.exists():
        return None
    record = json.loads(record_file.read_text())
    ref = ArtifactRef(**record["ref"])
    return ref, {key: from_record(value) for key, value in record["metadata"].items()}
