"""Task families by recipe ``task`` name."""

from finetune_assets.tasks.base import Evaluation, TaskFamily
from finetune_assets.tasks.classification import Classification

TASKS: dict[str, TaskFamily] = {task.name: task for task in (Classification(),)}


def get_task(name: str) -> TaskFamily:
    return TASKS[name]


__all__ = ["Evaluation", "TaskFamily", "TASKS", "get_task"]
