"""What every task family that trains a causal LM shares, so no family keeps its own copy.

``chat.py`` renders conversations with the tokenizer's chat template and derives the loss mask from
that rendering (assistant tokens only, EOS included; whole exchanges dropped, oldest first, when a
conversation is too long); ``scoring.py`` scores a model on those labels (perplexity) and
generates answers in left-padded batches of similar length; ``general_text.py`` scores the shipped
general-text probe (how much plain language a tuned model kept); ``chat_model.py`` is the base of
the chat families (instruction and preference tuning): loading, the export as a text-generation
pipeline, its answers. The instruction and preference families use them for conversations, the
summarization family for prompted summaries with a decoder-only model.
Nothing here knows about recipes' sections beyond the values passed in, or about Dagster.
"""
