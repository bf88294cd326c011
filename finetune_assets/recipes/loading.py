"""Finding and reading recipe files: which folders, one file at a time, errors that name the key.

Recipes come from the folders a user names, so a project keeps its own recipes outside the
installed package with no code change. In order of precedence:

1. the folders passed to :func:`finetune_assets.defs.build_definitions` (library use);
2. ``$FINETUNE_RECIPES``: folders separated by ``os.pathsep`` (``:`` on Linux);
3. ``[tool.finetune_assets] recipes = [...]`` in the nearest ``pyproject.toml`` above the working
   directory (paths relative to that file);
4. the recipes shipped in this folder.

In 2 and 3 the word ``shipped`` stands for this folder, so ``FINETUNE_RECIPES=~/recipes:shipped``
serves the user's recipes beside the shipped ones.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from finetune_assets.errors import RecipeError
from finetune_assets.recipes.chaining import broken_chains
from finetune_assets.recipes.schema import NAME_PATTERN, Recipe
from finetune_assets.recipes.sweep import variants

SHIPPED_DIR = Path(__file__).parent
SHIPPED = "shipped"
ENV_VAR = "FINETUNE_RECIPES"


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate one recipe file; errors name the file and the key. A ``.json`` file is a
    recipe as a run resolved it (:func:`save_resolved`), run-config overrides included."""
    path = Path(path)
    if path.suffix == ".json":
        return _load_resolved(path)
    if not re.fullmatch(NAME_PATTERN, path.stem):
        raise RecipeError(
            f"{path}: the file name is the recipe's asset group name; use letters, digits and underscores only"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecipeError(f"{path}: recipe file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read the recipe as UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys (task, base_model, dataset, ...)")
    odd = [key for key in data if not isinstance(key, str)]
    if odd:
        raise RecipeError(f"{path}: key {odd[0]!r} is not a name (quote it, or fix the indentation)")
    for reserved in ("name", "source_file"):
        if reserved in data:
            raise RecipeError(f"{path}: key '{reserved}' is not allowed; the file name is the recipe name")
    if "variant" in data:
        raise RecipeError(f"{path}: key 'variant' is not allowed; a sweep names its variants (see sweep:)")
    if "base_champion" in data:
        raise RecipeError(
            f"{path}: key 'base_champion' is not allowed; each run pins it (see base_model: recipe:<name>)"
        )
    return recipe_from_mapping(data, path.stem, path)


def recipe_from_mapping(data: dict, name: str, source_file: Path) -> Recipe:
    """Validate a recipe's keys already read from ``source_file``: a recipe file, or the
    ``attributes:`` of a Dagster component's ``defs.yaml`` (:mod:`finetune_assets.defs.fine_tune`).
    Relative paths in it are relative to that file's folder; errors name the file and the key."""
    try:
        recipe = Recipe(name=name, source_file=source_file.resolve(), **data)
    except ValidationError as exc:
        raise RecipeError(_describe(source_file, exc)) from None
    variants(recipe)  # every variant of a sweep is a valid recipe, or the error names sweep.<key>
    return recipe


def save_resolved(recipe: Recipe, folder: Path) -> Path:
    """Write ``recipe`` as this run sees it (overrides applied, its name and source file kept) to
    ``folder/recipe.json``: saved next to the trained weights, and what the training process reads."""
    target = folder / "recipe.json"
    target.write_text(recipe.model_dump_json(indent=2), encoding="utf-8")
    return target


def _load_resolved(path: Path) -> Recipe:
    try:
        return Recipe.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecipeError(f"{path}: recipe file not found") from exc
    except ValidationError as exc:
        raise RecipeError(_describe(path, exc)) from None


def load_recipes(*folders: str | Path) -> list[Recipe]:
    """Every recipe in ``folders`` (default: :func:`recipe_folders`), sorted by name; the first
    broken file raises its :class:`RecipeError`."""
    found = scan(*folders)
    if found.broken:
        raise found.broken[0][1]
    return found.recipes


@dataclass
class Scan:
    """The recipes that loaded, and each broken file with its error (a file never hides another)."""

    recipes: list[Recipe] = field(default_factory=list)
    broken: list[tuple[Path, RecipeError]] = field(default_factory=list)


def scan(*folders: str | Path) -> Scan:
    """Load every ``*.yaml`` in ``folders`` (default: :func:`recipe_folders`), keeping going past
    broken files. A second file with an already used name is broken: one name, one asset group; so
    is a recipe whose ``base_model: recipe:<name>`` names no loaded recipe or a cycle
    (:mod:`.chaining`)."""
    found = Scan()
    seen: dict[str, Path] = {}
    for folder in folders or recipe_folders():
        folder = Path(folder)
        if not folder.is_dir():
            found.broken.append((folder, RecipeError(f"{folder}: recipe folder not found")))
            continue
        for path in sorted(folder.glob("*.yaml")):
            try:
                recipe = load_recipe(path)
            except RecipeError as exc:
                found.broken.append((path, exc))
                continue
            if recipe.name in seen:
                found.broken.append(
                    (
                        path,
                        RecipeError(
                            f"{path}: recipe name '{recipe.name}' is already used by {seen[recipe.name]}; "
                            "rename one of the files"
                        ),
                    )
                )
                continue
            seen[recipe.name] = path
            found.recipes.append(recipe)
    chained = broken_chains(found.recipes, [path for path, _ in found.broken])
    found.broken.extend(chained)
    unfit = {path for path, _ in chained}
    found.recipes = sorted((r for r in found.recipes if r.source_file not in unfit), key=lambda recipe: recipe.name)
    return found


def recipe_folders(cwd: Path | None = None) -> list[Path]:
    """The folders to load recipes from, by the precedence in this module's docstring."""
    listed = os.environ.get(ENV_VAR, "").strip()
    if listed:
        return [_folder(entry, Path.cwd()) for entry in listed.split(os.pathsep) if entry.strip()]
    pyproject = _nearest_pyproject(cwd or Path.cwd())
    if pyproject is not None:
        try:
            settings = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
        except tomllib.TOMLDecodeError as exc:
            raise RecipeError(f"{pyproject}: not valid TOML ({exc})") from None
        entries = settings.get("finetune_assets", {}).get("recipes")
        if entries is not None:
            if isinstance(entries, str) or not all(isinstance(entry, str) for entry in entries):
                raise RecipeError(f"{pyproject}: tool.finetune_assets.recipes must be a list of folders")
            return [_folder(entry, pyproject.parent) for entry in entries]
    return [SHIPPED_DIR]


def _folder(entry: str, relative_to: Path) -> Path:
    entry = entry.strip()
    if entry == SHIPPED:
        return SHIPPED_DIR
    path = Path(entry).expanduser()
    return path if path.is_absolute() else relative_to / path


def _nearest_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid recipe"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif error["type"] == "missing":
            lines.append(f"  {key}: missing required key")
        else:
            lines.append(f"  {key}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)
