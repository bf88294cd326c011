"""The ``published_model`` stage: the champion the gate leaves in place, handed to every target the
recipe's ``publish:`` names.

It follows ``exported_model`` only in recipes that name a target (``mlflow``, ``hub``). Its artifact
is small: which champion goes where (``targets.json``). The publishing itself is its finish step,
run cached or not, because a target can change behind the cache (a rollback moved the alias, a
server was wiped): each target looks the champion up by its fingerprint and reuses what it finds,
so publishing twice creates nothing new, and only a champion not yet there is published. A target
that fails fails this step with its name and address; the local champion, decided upstream, stays.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.facts import RunFacts
from finetune_assets.pipeline.stages import Result, StageWork
from finetune_assets.promotion import champion as champion_store
from finetune_assets.promotion.decision import was_promoted
from finetune_assets.publishing.targets import Champion, Published, Target, publish_everywhere
from finetune_assets.recipes import Recipe
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import Json, Markdown

TARGETS = "targets.json"


def publishes(recipe: Recipe) -> bool:
    """Whether the recipe names a target to publish its champion to."""
    return recipe.publish.mlflow is not None or recipe.publish.hub is not None


def targets_of(recipe: Recipe, tracking_uri: str = "") -> list[Target]:
    """The recipe's targets, in the order they publish; ``tracking_uri``: the mlflow resource's."""
    from finetune_assets.publishing.hub import HubRepo
    from finetune_assets.publishing.mlflow_registry import MlflowRegistry

    spec = recipe.publish
    found: list[Target] = []
    if spec.mlflow is not None:
        found.append(MlflowRegistry.of(recipe, tracking_uri))
    if spec.hub is not None:
        found.append(HubRepo(spec.hub.repo_id, spec.hub.private))
    return found


def plan(work: StageWork, champion: ArtifactRef) -> Result:
    """The stage's artifact: the champion and the targets it goes to."""
    named = [name for name in ("mlflow", "hub") if getattr(work.recipe.publish, name) is not None]
    record = {"champion": champion.fingerprint, "champion_path": champion.path, "targets": named}
    (work.staging / TARGETS).write_text(json.dumps(record, indent=1))
    return record, {"targets": ", ".join(named)}


def publish(
    recipe: Recipe, root: Path, log, ref: ArtifactRef, facts: RunFacts, code_versions: dict
) -> tuple[ArtifactRef, dict]:
    """The finish step: each target finds the champion or receives it; metadata links to each.
    ``code_versions``: each stage's, from the chain's table (which imports this module)."""
    done = publish_champion(recipe, root, targets_of(recipe, facts.tracking_uri), log, facts.run_id, code_versions)
    if done is None:
        return ref, {"published": "nothing: no champion yet (the gate promoted no export)"}
    champion, published = done
    links = {}
    for entry in published:
        links[f"{entry.target}_uri"] = entry.uri
        links[f"{entry.target}_version"] = entry.version
        links[f"{entry.target}_address"] = entry.address
        links[f"{entry.target}_created"] = entry.created
    return ref, {
        "champion_fingerprint": champion.fingerprint,
        **links,
        "published": Json([entry.to_dict() for entry in published]),
        "publications": Markdown(
            markdown_table([{k: v for k, v in p.to_dict().items() if k != "details"} for p in published])
        ),
    }


def publish_champion(
    recipe: Recipe, root: Path, targets: list[Target], log, run_id: str = "", code_versions: dict | None = None
) -> tuple[Champion, list[Published]] | None:
    """The recipe's current champion (``champion.json``, not whatever export the run made: an export the
    gate did not promote is never published) handed to each target; None when there is no champion."""
    ref = champion_store.read(champion_store.exports_dir(root, recipe.name))
    if ref is None:
        log.info(f"{recipe.name}: no champion yet, nothing published")
        return None
    decision = decision_of(root, recipe.name, ref.fingerprint)
    champion = Champion(recipe, ref, run_id, decision, code_versions or {})
    return champion, publish_everywhere(champion, targets, log)


def decision_of(root: Path, recipe: str, fingerprint: str) -> str:
    """How ``fingerprint`` became champion, from the newest history row that made it so, or "current
    champion" (published after the fact, say when a recipe gains ``publish:``)."""
    for row in reversed(champion_store.history(champion_store.exports_dir(root, recipe))):
        if row.get("fingerprint") == fingerprint and was_promoted(row):
            return str(row["decision"])
    return "current champion"
