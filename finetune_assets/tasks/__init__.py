"""Task families: one plug-in per kind of job (classification, summarization, instruction tuning,
preference tuning, reward-driven tuning).

A task family is everything that differs between those jobs, behind the interface in
:mod:`.base` (four sides: data, training, evaluation, export): its columns and pandera schema, how
rows are read into them, tokenization, collator, metrics and baseline, report plots, and how the
export loads. :func:`get_task` binds a family to one recipe, so the pipeline asks
``get_task(recipe).schema()``, never passing the recipe twice. Helpers only one family uses live
inside its folder (``instruction/`` reads chat record formats, ``summarization/`` holds one module
per kind of base model and the pipeline class its exports ship); what both generative families
do with a causal LM (chat formatting, the loss mask, perplexity, batched generation, the chat
model's export) lives once in ``causal_lm/``, which is no family itself. Nothing here knows about Dagster or about training
methods.

:data:`REGISTRY` is what a recipe's ``task:`` may name (:data:`finetune_assets.recipes.schema.TaskName`
lists the same names). Family modules are light to import (torch and transformers are imported
inside their methods), so loading the Definitions reads them freely.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune_assets.tasks.base import TaskFamily
from finetune_assets.tasks.classification import Classification
from finetune_assets.tasks.instruction import Instruction
from finetune_assets.tasks.preference import Preference
from finetune_assets.tasks.reward import Reward
from finetune_assets.tasks.summarization import Summarization

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe

REGISTRY: dict[str, type[TaskFamily]] = {
    family.name: family for family in (Classification, Summarization, Instruction, Preference, Reward)
}


def get_task(recipe: Recipe) -> TaskFamily:
    """The task family the recipe's ``task:`` names, bound to that recipe."""
    return REGISTRY[recipe.task](recipe)


__all__ = ["REGISTRY", "TaskFamily", "get_task"]
