"""Models and tokenizers as a recipe wants them, for training, inference and export alike.

``methods.py`` is the one place that knows full fine-tuning from LoRA and QLoRA: it loads the base
model for a method, wraps it for training, and loads a trained checkpoint back; ``precision.py``
decides the numeric precision on this machine (bf16 where the hardware has it, fp32 elsewhere);
``tokenizer.py`` loads the recipe's tokenizer and tokenizes each text once. No Trainer, no
metrics, no files written here.
"""
