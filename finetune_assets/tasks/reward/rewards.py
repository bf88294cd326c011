"""A recipe's reward functions as named, versioned code: loaded, hashed, and called the way TRL calls them.

``reward.functions`` names each function: a shipped one (:data:`.functions.SHIPPED`, built from its
``options``), or ``module:function``, the user's own, imported from the recipe's folder first, then
``sys.path``, and called as ``function(completion, row, **options)``. Either returns a number for one
completion; ``row`` holds the prompt and the data fields of the prompt's row.

A function's version is the SHA-256 of the source file that defines it (the whole module, so a
helper it calls counts too): :func:`source_hashes` puts it into ``finetuned_model``'s fingerprint,
so editing a reward function retrains, and only the recipes that use it. Python caches an imported
module by name for the life of a process: two recipe folders holding different modules of one name
share the first one imported (the hash is read from the file each time).

:class:`RewardFunction` is what TRL's ``GRPOTrainer`` gets (``reward_funcs``): it scores a batch of
completions one by one, and a function that raises, or returns anything but a finite number (a
``bool``, ``None`` and NaN included), stops training with a :class:`RewardError` naming the
function, the recipe and the completion.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import numbers
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from finetune_assets.errors import RecipeError, RewardError
from finetune_assets.tasks.reward.functions import SHIPPED

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe
    from finetune_assets.recipes.schema import RewardFunctionSpec

# What TRL passes a reward function besides the data's columns: never part of a row.
TRL_EXTRAS = {"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}


class RewardFunction:
    """One of the recipe's reward functions: its name, weight, the scorer, and where its code lives."""

    def __init__(self, spec: RewardFunctionSpec, index: int, recipe: Recipe):
        self.key = f"reward.functions[{index}]"
        self.recipe_file = recipe.source_file.name
        self.weight = spec.weight
        self.score, self.code = _scorer(spec, recipe.source_file.parent, f"{self.recipe_file}: {self.key}")
        self.__name__ = spec.name or spec.function.rpartition(":")[2]  # TRL logs rewards/<name>/mean
        self.source = spec.function

    @cached_property
    def source_hash(self) -> str:
        """SHA-256 of the file that defines the function (see the module's docstring)."""
        return hashlib.sha256(Path(inspect.getsourcefile(self.code)).read_bytes()).hexdigest()

    def scores(self, completions: list[str], rows: list[dict]) -> list[float]:
        """One reward per completion, each checked to be a finite number."""
        return [self.one(completion, row) for completion, row in zip(completions, rows, strict=True)]

    def one(self, completion: str, row: dict) -> float:
        try:
            value = self.score(completion, row)
        except Exception as error:
            raise RewardError(self._fault(f"raised {type(error).__name__}: {error}", completion, row)) from error
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise RewardError(self._fault(f"returned {value!r}, not a finite number", completion, row))
        return float(value)

    def __call__(self, prompts: list, completions: list, **columns) -> list[float]:
        """TRL's call: prompts and completions (texts or chat messages) and the data's columns."""
        data = {key: value for key, value in columns.items() if key not in TRL_EXTRAS}
        rows = [
            {"prompt": said(prompt), **{key: value[i] for key, value in data.items()}}
            for i, prompt in enumerate(prompts)
        ]
        return self.scores([said(completion) for completion in completions], rows)

    def _fault(self, what: str, completion: str, row: dict) -> str:
        return (
            f"{self.recipe_file}: reward function '{self.__name__}' ({self.key}: {self.source}) {what}, scoring "
            f"the completion {completion[:300]!r} to the prompt {str(row.get('prompt', ''))[:200]!r}. Fix the "
            "function (a reward function returns a number for every completion), then train again"
        )


def said(message) -> str:
    """The text of a prompt or completion as TRL hands it: a text, or chat messages (the last one's)."""
    return message[-1]["content"] if isinstance(message, list) else str(message)


def load(recipe: Recipe) -> list[RewardFunction]:
    """The recipe's reward functions, in order."""
    return [RewardFunction(spec, index, recipe) for index, spec in enumerate(recipe.reward.functions)]


def source_hashes(recipe: Recipe) -> dict[str, str]:
    """Each reward function's name and the hash of its source: part of ``finetuned_model``'s fingerprint."""
    return {function.__name__: function.source_hash for function in load(recipe)}


def row_fields(recipe: Recipe, numbers_only: bool = False) -> tuple[str, ...]:
    """The data fields the shipped functions read from each row (``exact_answer``'s ``field``), each
    once; ``numbers_only``: those compared as numbers (``kind: number``, the default)."""
    fields = [
        spec.options.get("field", "answer")
        for spec in recipe.reward.functions
        if spec.function == "exact_answer" and (not numbers_only or spec.options.get("kind", "number") == "number")
    ]
    return tuple(dict.fromkeys(fields))


def _scorer(spec: RewardFunctionSpec, folder: Path, where: str) -> tuple[Callable, Callable]:
    """The scorer ``(completion, row) -> number`` and the function whose source file versions it."""
    if ":" not in spec.function:
        factory = SHIPPED.get(spec.function)
        if factory is None:
            raise RecipeError(
                f"{where}: function {spec.function!r} is neither a shipped reward function "
                f"({', '.join(SHIPPED)}) nor module:function"
            )
        try:
            return factory(**spec.options), factory
        except Exception as error:  # a missing or unknown option, a bad pattern, jsonschema's SchemaError
            raise RecipeError(f"{where}: options {spec.options} do not suit {spec.function}: {error}") from error
    function = _user_function(spec.function, folder, where)
    options = dict(spec.options)
    return (lambda completion, row: function(completion, row, **options)), function


def _user_function(reference: str, folder: Path, where: str) -> Callable:
    """``module:function`` imported with the recipe's folder first on ``sys.path``."""
    module_name, _, name = reference.partition(":")
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RecipeError(
            f"{where}: cannot import {module_name!r} ({error}); a user's reward function lives in a module "
            f"beside the recipe ({folder}) or on sys.path"
        ) from error
    finally:
        sys.path.remove(str(folder))
    function = getattr(module, name, None)
    if not callable(function):
        raise RecipeError(f"{where}: {module_name} ({module.__file__}) has no function {name!r}")
    return function
