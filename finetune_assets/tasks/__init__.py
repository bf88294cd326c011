"""Task families by recipe ``task`` name."""

from finetune_assets.tasks.base import Evaluation, TaskFamily
from finetune_assets.tasks.classification import Classification
from finetune_assets.tasks.instruction import Instruction
from finetune_assets.tasks.summarization import Summarization

TASKS: dict[str, TaskFamily] = {task.name: task for task in (Classification(), Summarization(), Instruction())}


def get_task(name: str) -> TaskFamily:
    return TASKS[name]


__all__ = ["Evaluation", "TaskFamily", "TASKS", "get_task"]
