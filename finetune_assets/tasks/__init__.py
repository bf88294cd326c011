"""Task families by recipe ``task`` name, imported on first use.

A task module pulls in torch and transformers; importing it lazily keeps loading the Definitions
(and a fully cached run of another task's recipe) from paying for every task family.
"""

from functools import cache
from importlib import import_module

from finetune_assets.tasks.base import Evaluation, TaskFamily

TASK_CLASSES = {
    "classification": "finetune_assets.tasks.classification:Classification",
    "summarization": "finetune_assets.tasks.summarization:Summarization",
    "instruction": "finetune_assets.tasks.instruction:Instruction",
}


@cache
def get_task(name: str) -> TaskFamily:
    module, _, cls = TASK_CLASSES[name].partition(":")
    return getattr(import_module(module), cls)()


__all__ = ["Evaluation", "TaskFamily", "TASK_CLASSES", "get_task"]
