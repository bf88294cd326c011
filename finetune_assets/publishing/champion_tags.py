"""What a published champion is tagged with, the same at every target that keeps tags.

Read from the export's reference alone (its lineage holds every upstream artifact): the champion's
fingerprint (how a target finds it again), each asset's fingerprint, the raw data's content hash,
each stage's code version, the tuned, base and previous champion's metrics on the test rows, the
gate's decision and the Dagster run that published it. Values are strings, as registries keep them.
"""

from __future__ import annotations

from finetune_assets.pipeline.stage_names import EVALUATION_REPORT, EXPORTED_MODEL, RAW_DATASET
from finetune_assets.publishing.targets import Champion

FINGERPRINT = "finetune_assets.fingerprint"  # the key a target finds the champion by


def champion_tags(champion: Champion) -> dict[str, str]:
    """Every tag of ``champion``, by key."""
    ref, lineage = champion.ref, champion.ref.lineage
    report = lineage.get(EVALUATION_REPORT, {})
    metrics = report.get("metrics") or ref.info.get("metrics") or {}
    previous = (report.get("champion") or {}).get("metrics") or {}
    tags = {
        FINGERPRINT: ref.fingerprint,
        "recipe": champion.recipe.name,
        "dagster_run_id": champion.run_id or "none (published outside Dagster)",
        "decision": champion.decision or "none",
        "raw_content_hash": str(lineage.get(RAW_DATASET, {}).get("content_hash", "unknown")),
        f"fingerprint.{EXPORTED_MODEL}": ref.fingerprint,
        **{f"fingerprint.{name}": str(entry.get("fingerprint")) for name, entry in sorted(lineage.items())},
        **{f"code_version.{name}": version for name, version in sorted(champion.code_versions.items())},
        **{_metric_key(name): _figure(value) for name, value in sorted(metrics.items())},
        **{f"metric.champion.{name}": _figure(value) for name, value in sorted(previous.items())},
    }
    return tags


def _metric_key(name: str) -> str:
    """``metric.tuned.accuracy`` or, for the report's ``baseline_accuracy``, ``metric.base.accuracy``."""
    return f"metric.base.{name.removeprefix('baseline_')}" if name.startswith("baseline_") else f"metric.tuned.{name}"


def _figure(value) -> str:
    return f"{float(value):.6g}" if isinstance(value, int | float) else str(value)
