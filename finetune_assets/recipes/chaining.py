"""Recipes that start from other recipes: ``base_model: recipe:<name>`` checked across the loaded recipes.

One recipe file alone can only say that it does not name itself (the schema does). Whether the
recipe it names is loaded, and whether the names go round in a cycle (a starts from b's champion,
b from a's), is known only once every folder is read: :func:`broken_chains` finds those recipes,
and the loader shows each as a broken recipe whose error names its file and ``base_model``. A
recipe starting from a broken one is broken too, since its base can never be trained. Where the
named champion is found and pinned for a run is :mod:`finetune_assets.promotion.base_champion`.
"""

from __future__ import annotations

from pathlib import Path

from finetune_assets.errors import RecipeError
from finetune_assets.recipes.schema import Recipe


def broken_chains(recipes: list[Recipe], broken: list[Path]) -> list[tuple[Path, RecipeError]]:
    """The recipes whose ``recipe:<name>`` base is not among ``recipes`` (or is itself broken), or
    lies on a cycle; ``broken`` are the files that did not load, named when one of them is meant."""
    found: list[tuple[Path, RecipeError]] = []
    loaded = {recipe.name: recipe for recipe in recipes}
    while True:
        named = {name: recipe for name, recipe in loaded.items() if recipe.base_recipe is not None}
        failing = {name: _problem(recipe, loaded, broken) for name, recipe in named.items()}
        failing = {name: problem for name, problem in failing.items() if problem}
        if not failing:
            return found
        for name, problem in failing.items():
            recipe = loaded.pop(name)
            found.append((recipe.source_file, RecipeError(f"{recipe.source_file}: base_model: {problem}")))
            broken = [*broken, recipe.source_file]


def _problem(recipe: Recipe, loaded: dict[str, Recipe], broken: list[Path]) -> str:
    """What is wrong with the recipe's ``recipe:<name>`` base, or ``""``."""
    name = recipe.base_recipe
    if name not in loaded:
        files = [path for path in broken if path.stem == name]
        if files:
            return f"recipe:{name}: that recipe ({files[0]}) is broken (see its own error); fix it first"
        return (
            f"recipe:{name}: no recipe named '{name}' is loaded (loaded: {', '.join(sorted(loaded)) or 'none'}); "
            "name a recipe file of the recipe folders, without .yaml"
        )
    path = [recipe.name, name]
    while (after := loaded[path[-1]].base_recipe) is not None and after in loaded and after not in path:
        path.append(after)
    if after == recipe.name:
        return (
            f"recipe:{name}: the recipes start from each other's champions in a cycle ({' -> '.join([*path, after])}); "
            "one of them must start from a model"
        )
    return ""
