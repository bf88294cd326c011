"""Rollback: the champion moved back to an earlier export of the promotion history, everywhere at once.

One step moves what users get: the registry's ``champion`` alias (when the recipe publishes to
MLflow) to the version registered for that export, then ``champion.json`` and ``current``, and
appends a history row saying ``rolled back``, by whom and why. It happens under the champion lock,
so no gate decides meanwhile. The export to return to is named by fingerprint (``to``) or, by
default, the champion before the current one; an export whose folder is gone, or that the history
never promoted, is refused, naming it. The alias moves first: a registry that cannot be reached
leaves the local champion as it was. The Hub keeps every commit; rolling back its main branch is
left to a person (the commit to return to is named in the history of the repository).
"""

from __future__ import annotations

import time
from pathlib import Path

from finetune_assets.errors import PromotionError
from finetune_assets.pipeline import caching
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.promotion import champion as champion_store
from finetune_assets.promotion.decision import Verdict, was_promoted
from finetune_assets.recipes import Recipe


def rollback(recipe: Recipe, root: Path, reason: str, who: str, to: str = "", tracking_uri: str = "") -> dict:
    """Make the export ``to`` (default: the previous champion) the champion again; the history row."""
    if not reason.strip():
        raise PromotionError(f"rollback of {recipe.name}: say why (a reason is recorded in the history)")
    folder = champion_store.exports_dir(root, recipe.name)
    with champion_store.locked(folder):
        current = champion_store.read(folder, repair=True)
        target = _export(folder, recipe.name, to or _previous(folder, current))
        version = _move_alias(recipe, target, tracking_uri)
        champion_store.write(folder, target)
        entry = {
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "fingerprint": target.fingerprint,
            "champion": current.fingerprint if current else None,
            "decision": f"{Verdict.ROLLED_BACK.value}: {reason.strip()}",
            "by": who,
            "registry_version": version,
        }
        champion_store.history(folder, entry)
    return entry


def _previous(folder: Path, current: ArtifactRef | None) -> str:
    """The newest export the history made champion before the current one."""
    for row in reversed(champion_store.history(folder)):
        if was_promoted(row) and current is not None and row.get("fingerprint") != current.fingerprint:
            return str(row["fingerprint"])
    raise PromotionError(f"{folder}: the history names no earlier champion to roll back to")


def _export(folder: Path, recipe: str, fingerprint: str) -> ArtifactRef:
    """The export ``fingerprint`` of the history, complete on disk; else the refusal naming it."""
    promoted = {row.get("fingerprint") for row in champion_store.history(folder) if was_promoted(row)}
    if fingerprint not in promoted:
        raise PromotionError(
            f"cannot roll {recipe} back to {fingerprint}: the promotion history ({folder / champion_store.HISTORY}) "
            f"never made it champion; earlier champions: {', '.join(sorted(filter(None, promoted))) or 'none'}"
        )
    found = caching.load(folder / fingerprint)
    if found is None or not Path(found[0].path).is_dir():
        raise PromotionError(
            f"cannot roll {recipe} back to {fingerprint}: its export folder {folder / fingerprint} is gone "
            "(deleted, or never complete); choose another with --to"
        )
    return found[0]


def _move_alias(recipe: Recipe, target: ArtifactRef, tracking_uri: str) -> str | None:
    """The registry version the alias now names, when the recipe publishes to MLflow."""
    if recipe.publish.mlflow is None:
        return None
    from finetune_assets.publishing.mlflow_registry import MlflowRegistry

    registry = MlflowRegistry.of(recipe, tracking_uri)
    version = registry.version_of(target.fingerprint)
    if version is None:
        raise PromotionError(
            f"cannot roll {recipe.name} back to {target.fingerprint}: no version of {registry.model_name} at "
            f"{registry.address} carries it; the local champion is unchanged"
        )
    registry.point_alias(version.version)
    return str(version.version)
