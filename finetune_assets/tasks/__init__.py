"""Task families: one plug-in per kind of job (classification, summarization, instruction tuning).

A task family is everything that differs between those jobs, behind the one interface in
:mod:`.base`: its columns and pandera schema, how rows are read into them, tokenization, collator,
metrics and baseline, report plots, and how the export loads. Helpers only one family uses live
inside its folder (``instruction/`` reads chat record formats, ``summarization/`` holds one module
per kind of base model and the pipeline class its exports ship); what both generative families
do with a causal LM (chat formatting, the loss mask, perplexity, batched generation) lives once in
``causal_lm/``, which is no family itself. Nothing here knows about Dagster or about training
methods.

:data:`REGISTRY` is what a recipe's ``task:`` may name. Family modules are light to import (torch
and transformers are imported inside their methods), so loading the Definitions reads them freely.
"""

from __future__ import annotations

from functools import cache

from finetune_assets.tasks.base import TaskFamily
from finetune_assets.tasks.classification import Classification
from finetune_assets.tasks.instruction import Instruction
from finetune_assets.tasks.summarization import Summarization

REGISTRY: dict[str, type[TaskFamily]] = {family.name: family for family in (Classification, Summarization,
                                                                            Instruction)}
TASK_NAMES = tuple(REGISTRY)


@cache
def get_task(name: str) -> TaskFamily:
    """The task family a recipe's ``task:`` names (one stateless instance per family)."""
    return REGISTRY[name]()


__all__ = ["REGISTRY", "TASK_NAMES", "TaskFamily", "get_task"]
