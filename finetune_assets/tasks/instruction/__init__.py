"""The instruction-tuning task family (causal LM), with its chat formatting (``chat.py``: prompt
template, loss on the answer only) and its scoring (``scoring.py``: perplexity on the answers,
generated answers)."""

from finetune_assets.tasks.instruction.task import Instruction

__all__ = ["Instruction"]
