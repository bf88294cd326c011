"""What every publishing target is: a name, an address, a way to find a champion already published
(by its fingerprint) and a way to publish it.

:func:`publish_everywhere` asks each target in turn: a champion already there is reused (a re-run, or
the gate keeping its champion, creates nothing new), else published. A target that fails raises
:class:`~finetune_assets.errors.PublishError` naming the target and its address (a tracking URI, a
repository id), never a credential; targets before it keep what they published.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from finetune_assets.errors import PublishError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.recipes import Recipe


@dataclass(frozen=True)
class Champion:
    """The export to publish and what is known about it."""

    recipe: Recipe
    ref: ArtifactRef  # the champion's export (the gate's output)
    run_id: str = ""  # the Dagster run that published it ("" outside Dagster)
    decision: str = ""  # how it became champion, e.g. "promoted" or "rolled back: ..."
    code_versions: dict = field(default_factory=dict)  # each stage's code version (the chain's table)

    @property
    def folder(self) -> Path:
        return Path(self.ref.path)

    @property
    def fingerprint(self) -> str:
        return self.ref.fingerprint


@dataclass(frozen=True)
class Published:
    """One champion at one target: where it is and whether this run created it."""

    target: str  # "mlflow", "hub"
    address: str  # the tracking URI, the Hub's repository id
    fingerprint: str
    version: str  # the registry version, the Hub commit
    uri: str  # how a user loads it: models:/<name>@champion, the Hub id
    created: bool = False  # False: found already published and reused
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Target(Protocol):
    name: str
    address: str

    def find(self, champion: Champion) -> Published | None:
        """The champion as already published here (looked up by its fingerprint), or None."""

    def publish(self, champion: Champion) -> Published:
        """Publish the champion; it becomes what users of this target get."""


def publish_everywhere(champion: Champion, targets: list[Target], log) -> list[Published]:
    """Each target's publication of ``champion``: found and reused, or created."""
    done = []
    for target in targets:
        try:
            found = target.find(champion)
            published = found or target.publish(champion)
        except PublishError:
            raise
        except Exception as exc:  # a server down, a refused login: name the target, never a token
            raise PublishError(
                f"publishing {champion.recipe.name}'s champion {champion.fingerprint} to {target.name} at "
                f"{target.address} failed ({type(exc).__name__}: {_first_line(exc)}). The local champion stays "
                "promoted; fix the target and materialize published_model again."
            ) from exc
        verb = "created" if published.created else "already there, reused"
        log.info(f"{target.name} at {target.address}: {published.uri} version {published.version} ({verb})")
        done.append(published)
    return done


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
