"""The summarization task family and the pipeline class its exports ship (transformers 5 removed
its own ``summarization`` pipeline)."""

from finetune_assets.tasks.summarization.task import Summarization

__all__ = ["Summarization"]
