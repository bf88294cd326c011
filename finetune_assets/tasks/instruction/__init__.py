"""The instruction-tuning task family (causal LM on conversations): ``task.py`` the family,
``conversations.py`` the chat record formats it reads (OpenAI, ShareGPT, Alpaca). Chat formatting,
the loss mask and scoring are shared with summarization in ``tasks/causal_lm/``."""

from finetune_assets.tasks.instruction.task import Instruction

__all__ = ["Instruction"]
