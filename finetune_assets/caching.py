"""Fingerprint caching: a stage whose inputs did not change reuses its artifact in seconds.

A stage's fingerprint hashes its upstream fingerprints, the recipe sections it reads and its
code version. Its folder is named by that fingerprint and carries ``artifact.json`` (the ref and
the metadata it was materialized with), written inside the atomic folder, so a folder that exists
is complete and can be reused as it is. This module stays light (no torch, no transformers) so a
fully cached run does not pay for importing them.
"""

from __future__ import annotations

import json
from pathlib import Path

from dagster import MetadataValue

from finetune_assets.artifacts import ArtifactRef, fingerprint
from finetune_assets.recipe import Recipe

RECORD = "artifact.json"

# Bump a stage's version when its code changes what it writes; it is part of the fingerprint.
CODE_VERSIONS = {
    "raw_dataset": "1",
    "clean_dataset": "1",
    "tokenized_splits": "1",
    "finetuned_model": "2",  # 2: training_figures.json next to the weights
    "evaluation_report": "1",
    "exported_model": "2",  # 2: adapter/ beside the merged model; method lines in the card
}

# The recipe sections each stage reads: changing any other key does not invalidate the stage.
RECIPE_SECTIONS = {
    "raw_dataset": ("dataset",),
    "clean_dataset": ("task", "dataset", "cleaning"),
    "tokenized_splits": ("base_model", "splits", "training.max_length", "training.max_target_length",
                         "training.input_prefix"),
    "finetuned_model": ("base_model", "method", "lora", "quantization", "training"),
    "evaluation_report": ("generation", "evaluation"),
    "exported_model": ("generation",),
}


def code_version(stage: str, recipe: Recipe) -> str:
    """What Dagster sees as the asset's code version: the stage's code and its recipe sections,
    so editing a recipe marks exactly the affected assets stale in the UI."""
    return f"{CODE_VERSIONS[stage]}-{fingerprint(recipe.section(*RECIPE_SECTIONS[stage]))}"


def stage_fingerprint(stage: str, recipe: Recipe, upstream: list[ArtifactRef], *extra) -> str:
    return fingerprint([ref.fingerprint for ref in upstream], code_version(stage, recipe), *extra)


def ancestry(**upstream: ArtifactRef) -> dict:
    """Every artifact upstream of these refs, by asset name: the chain back to the raw data."""
    found: dict = {}
    for name, ref in upstream.items():
        found.update(ref.lineage)
        found[name] = {"path": ref.path, "fingerprint": ref.fingerprint, **ref.info}
    return found


def save(staging: Path, ref: ArtifactRef, metadata: dict) -> None:
    """Record the ref and the JSON-able metadata inside the artifact's (staging) folder."""
    plain = {key: _plain(value) for key, value in metadata.items()}
    record = {"ref": json.loads(ref.to_json()), "metadata": {k: v for k, v in plain.items() if v is not None}}
    (staging / RECORD).write_text(json.dumps(record, indent=1))


def load(folder: Path) -> tuple[ArtifactRef, dict] | None:
    """The ref and metadata of a complete artifact in ``folder``, or None."""
    record_file = folder / RECORD
    if not record_file.exists():
        return None
    record = json.loads(record_file.read_text())
    ref = ArtifactRef(**record["ref"])
    return ref, {key: _restore(value) for key, value in record["metadata"].items()}


_KINDS = {"md": MetadataValue.md, "path": MetadataValue.path, "json": MetadataValue.json}


def _plain(value):
    if isinstance(value, (str, int, float, bool)):
        return value
    for kind, maker in _KINDS.items():
        if type(value) is type(maker("" if kind != "json" else {})):
            return {"__kind__": kind, "value": value.value}
    if hasattr(value, "value") and isinstance(value.value, (str, int, float, bool)):
        return value.value
    return None  # e.g. a table schema: shown on fresh materializations only


def _restore(value):
    if isinstance(value, dict) and "__kind__" in value:
        return _KINDS[value["__kind__"]](value["value"])
    return value
