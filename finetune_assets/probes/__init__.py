"""Text the project ships to probe models with, not to train them on.

``general_text.jsonl``: three dozen short paragraphs of plain, everyday English (written for this
project; one ``{"text": ...}`` object per line). The instruction family scores every model on them
(:mod:`finetune_assets.tasks.causal_lm.general_text`): a tuned model whose perplexity here rose
far above its base model's has forgotten general language while learning the recipe's data, and
the ``forgetting`` check says so. No code lives here, only the data and this note.
"""
