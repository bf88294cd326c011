"""Another recipe's champion as a recipe's base model: ``base_model: recipe:<name>``, pinned per run.

The champion of recipe ``<name>`` is its current export (:mod:`.champion`): a merged, self-contained
folder that loads like any model folder. A run pins it once per lineage, so every stage of one
model starts from the same champion even when ``<name>`` promotes a new one meanwhile: the first
stage that uses the base (``tokenized_splits``, or ``clean_dataset`` where the starting model writes
the rejected answers of preference pairs) pins the champion of the moment and records it in
its reference; the stages after it find it in their upstream references. Pinned, it is
``recipe.base_champion`` (path and fingerprint): the task's ``base_location`` is its folder, the
fingerprints of the stages that read ``base_model`` include its fingerprint (a new champion of
``<name>`` is a new tokenizer and model, hence a retraining), and the training process reads it from
the ``recipe.json`` it is handed. The data stages before it need no base, so they run while
``<name>`` has no champion yet; ``tokenized_splits`` then fails, before anything is trained, with an
error naming both recipes. (In one run with ``<name>``'s assets, the asset graph's edge from
``<name>/exported_model`` puts ``tokenized_splits`` after the champion is decided.)
"""

from __future__ import annotations

from pathlib import Path

from finetune_assets.errors import SourceError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.promotion import champion
from finetune_assets.recipes import Recipe
from finetune_assets.recipes.schema import BaseChampion

KEY = "base_champion"  # where a stage that used the base records it, in its reference's info


def pin(recipe: Recipe, root: Path, upstream: list[ArtifactRef], uses_base: bool) -> Recipe:
    """``recipe`` with its ``recipe:<name>`` base pinned: the champion its upstream artifacts were made
    from, else (for a stage that ``uses_base``) ``<name>``'s current champion under ``root``. Other
    recipes, and the data stages before the base is used, are returned as they are."""
    if recipe.base_recipe is None or recipe.base_champion is not None:
        return recipe
    pinned = recorded(upstream)
    if pinned is None and not uses_base:
        return recipe
    pinned = pinned or current(recipe, root)
    if not Path(pinned.path).is_dir():
        raise SourceError(
            f"{recipe.source_file.name}: base_model: recipe:{pinned.recipe}: the champion {pinned.fingerprint} "
            f"this lineage started from is gone ({pinned.path}); materialize {recipe.name} again from the start"
        )
    return recipe.model_copy(update={"base_champion": pinned})


def recorded(upstream: list[ArtifactRef]) -> BaseChampion | None:
    """The champion an upstream artifact (or one of its own upstream artifacts) was made from."""
    for ref in upstream:
        for info in (ref.info, *ref.lineage.values()):
            if isinstance(info, dict) and KEY in info:
                return BaseChampion(**info[KEY])
    return None


def current(recipe: Recipe, root: Path) -> BaseChampion:
    """The current champion of the recipe that ``recipe``'s base names; none is an error naming both."""
    name = recipe.base_recipe
    folder = champion.exports_dir(root, name)
    found = champion.read(folder)
    if found is None:
        raise SourceError(
            f"{recipe.source_file.name}: base_model: recipe:{name}: recipe {name} has no champion yet "
            f"(no {champion.CHAMPION} with a complete export in {folder}). Materialize {name} first (its "
            f"exported_model becomes the champion once it passes the promotion gate), then {recipe.name}."
        )
    return BaseChampion(recipe=name, path=found.path, fingerprint=found.fingerprint)


def record(recipe: Recipe, info: dict, metadata: dict) -> tuple[dict, dict]:
    """A stage that used the pinned champion says so: in its reference (for the stages after it) and
    in its metadata (for a person)."""
    if recipe.base_champion is None:
        return info, metadata
    pinned = recipe.base_champion
    shown = f"{pinned.recipe} champion {pinned.fingerprint} ({pinned.path})"
    return {**info, KEY: pinned.model_dump()}, {**metadata, KEY: shown}
