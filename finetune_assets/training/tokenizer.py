"""Loading the base model's tokenizer the same way at every stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformers import AutoTokenizer

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe



def load_tokenizer(location: str, recipe: Recipe):
    """The tokenizer of ``location``; models without a pad token pad with EOS (masked by attention)."""
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=recipe.trust_remote_code)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
