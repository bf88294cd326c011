"""A recipe's ``sweep:``: the variants of one fine-tuning job that are trained side by side.

A sweep is a grid (every combination of the listed values) or an explicit list of overrides::

    sweep:                                  sweep:
      training.learning_rate: [5.0e-5, 1.0e-4]  - {method: full}
      method: [full, lora]                      - {method: lora, lora.r: 16, training.learning_rate: 1.0e-3}

Each variant is the recipe with its overrides applied and validated through the same schema as
the file itself, so a bad value is an error naming ``sweep.<key>`` like any other recipe key. Its
name is readable and stable (``lr=5e-05,method=lora``: short aliases for common keys, sorted), and
becomes the variant's Dagster partition. A sweep varies how the model trains (``training.*``,
``lora.*``, ``method``) and nothing the variants share: the data stages and the test rows every
variant is scored on (:data:`SHARED`), so all variants are compared on the same rows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from finetune_assets.errors import RecipeError
from finetune_assets.recipes.schema import Recipe

SWEEPABLE = ("training.", "lora.")  # and the key method
# Settings every variant must share, with the reason; tests/test_sweep.py checks that these cover
# every training.* key the unpartitioned stages read and every key that picks the scored test rows.
SHARED = {
    "training.max_length": "tokenized_splits, shared by every variant, is cut at it",
    "training.max_target_length": "tokenized_splits, shared by every variant, is cut at it",
    "training.input_prefix": "tokenized_splits, shared by every variant, is tokenized with it",
    "training.max_eval_samples": "it picks the test rows every variant is scored on",
    "training.seed": "it picks the sampled test rows every variant is scored on",
    "training.eval_batch_size": "the test rows are scored alike for every variant",
}
ALIASES = {
    "training.learning_rate": "lr",
    "training.epochs": "epochs",
    "training.batch_size": "batch",
    "training.gradient_accumulation_steps": "accum",
    "training.weight_decay": "wd",
    "training.warmup": "warmup",
    "training.max_train_samples": "train_rows",
    "lora.r": "r",
    "lora.alpha": "alpha",
    "lora.dropout": "lora_dropout",
    "lora.target_modules": "targets",
}
AS_WRITTEN = "as-written"  # the name of an empty override: the recipe itself


@dataclass(frozen=True)
class Variant:
    name: str  # its partition key
    overrides: dict[str, Any]  # dotted key -> value, as the sweep lists them
    recipe: Recipe  # the recipe with the overrides applied (``sweep`` None, ``variant`` = name)


def variants(recipe: Recipe) -> list[Variant]:
    """The recipe's variants in the sweep's order (a grid: the first key varies slowest); ``[]``
    without a sweep. Raises :class:`RecipeError` naming the file and ``sweep.<key>``."""
    if recipe.sweep is None:
        return []
    found: dict[str, Variant] = {}
    for overrides in _override_sets(recipe):
        made = Variant(_name(overrides), overrides, _apply(recipe, overrides))
        if made.name in found:
            _fail(recipe, f"sweep: the variant {made.name} is listed twice")
        found[made.name] = made
    return list(found.values())


def variant(recipe: Recipe, name: str) -> Recipe:
    """The recipe of the variant called ``name``."""
    for made in variants(recipe):
        if made.name == name:
            return made.recipe
    raise RecipeError(
        f"{recipe.source_file}: the sweep has no variant {name!r} (it has "
        f"{', '.join(v.name for v in variants(recipe))}); was the sweep edited since?"
    )


def _override_sets(recipe: Recipe) -> list[dict[str, Any]]:
    """Every variant's overrides, from a grid or a list, with the keys checked."""
    sweep = recipe.sweep
    if isinstance(sweep, dict) and sweep:
        for key, values in sweep.items():
            _check_key(recipe, key)
            if not isinstance(values, list) or not values:
                _fail(recipe, f"sweep.{key}: a grid lists the values to try, e.g. {key}: [a, b] (got {values!r})")
        return [dict(zip(sweep, combination)) for combination in itertools.product(*sweep.values())]
    if isinstance(sweep, list) and sweep:
        for position, overrides in enumerate(sweep, start=1):
            if not isinstance(overrides, dict):
                _fail(
                    recipe,
                    f"sweep[{position}]: each entry is a mapping of settings, e.g. "
                    f"{{training.learning_rate: 1.0e-4}} (got {overrides!r})",
                )
            for key in overrides:
                _check_key(recipe, key)
        return [dict(overrides) for overrides in sweep]
    _fail(
        recipe,
        "sweep: a grid {training.learning_rate: [5.0e-5, 1.0e-4], method: [full, lora]} or a list "
        f"of overrides [{{method: full}}, {{method: lora, lora.r: 16}}] (got {sweep!r})",
    )


def _check_key(recipe: Recipe, key: object) -> None:
    if not isinstance(key, str) or not (key.startswith(SWEEPABLE) or key == "method"):
        _fail(
            recipe,
            f"sweep.{key}: a sweep varies training.*, lora.* and method only (dotted keys, e.g. "
            "training.learning_rate); the data stages are shared by every variant",
        )
    if key in SHARED:
        _fail(recipe, f"sweep.{key}: every variant must share it: {SHARED[key]}")


def _apply(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """The recipe with ``overrides`` set, validated by the schema; errors name ``sweep.<key>``."""
    data = recipe.model_dump(exclude={"sweep", "variant"})
    for key, value in overrides.items():
        *sections, last = key.split(".")
        target = data
        for section in sections:
            target = target.get(section) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            _fail(recipe, f"sweep.{key}: unknown key")
        target[last] = value
    name = _name(overrides)
    try:
        made = Recipe(**data, variant=name)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            _fail(recipe, f"sweep.{where}: unknown key")
        key = next((key for key in overrides if where == key or where.startswith(f"{key}.")), None)
        _fail(
            recipe,
            f"sweep.{key}: {error['msg']} (got {overrides[key]!r})"
            if key
            else f"sweep variant {name}: {where or 'recipe'}: {error['msg']}",
        )
    if made.method == "full" and any(key.startswith("lora.") for key in overrides):
        _fail(
            recipe,
            f"sweep variant {name}: sets lora.* with method full, which does not use it (the grid "
            "trains the same model twice); list the variants instead: [{method: full}, "
            "{method: lora, lora.r: 16}]",
        )
    return made


def _name(overrides: dict[str, Any]) -> str:
    """``lr=5e-05,method=lora``: aliases for common keys, the key's last part for others, sorted."""
    if not overrides:
        return AS_WRITTEN
    return ",".join(
        sorted(f"{ALIASES.get(key, key.split('.')[-1])}={_shown(value)}" for key, value in overrides.items())
    )


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list):
        return "+".join(map(_shown, value))
    return str(value)


def _fail(recipe: Recipe, message: str):
    raise RecipeError(f"{recipe.source_file}: invalid recipe\n  {message}")
