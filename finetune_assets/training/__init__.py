"""Training and what follows it, the same for every task family.

``methods.py`` is the one place that knows full fine-tuning from LoRA and QLoRA; ``trainer.py``
runs the Hugging Face Trainer (``progress.py`` streams its progress into the run log);
``evaluation.py`` scores the tuned and the base model on the same test rows; ``export.py`` writes
the self-contained folder ``transformers.pipeline`` loads. ``tokenizer.py`` and ``generation.py``
load the tokenizer and apply the recipe's decoding the same way everywhere. What differs between
tasks is asked of the task family (``tasks/``), never decided here.
"""
