"""Training and what follows it, the same for every task family.

``run.py`` is the training process's entry point (``python -m finetune_assets.training.run``, with
or without Dagster); ``launch.py`` builds the command that starts it (alone, ``torchrun``,
``accelerate launch``) and tells a process its rank; ``checkpoints.py`` decides which checkpoint
may be resumed. ``methods.py`` is the one place that knows full fine-tuning from LoRA and QLoRA;
``precision.py`` decides the numeric precision on this machine (bf16 autocast where it has it) for
training and evaluation alike; ``trainer.py`` runs the Hugging Face Trainer (``progress.py`` streams
its progress into the log, ``tracking.py`` checks and places the experiment trackers of
``training.report_to``); ``evaluation.py`` scores the tuned and the base model on the same test
rows, and ``batching.py`` gives evaluation and generation batches of similar length; ``export.py``
writes the self-contained folder ``transformers.pipeline`` loads, ``merge_check.py`` verifies
that folder is the model that was trained and ``reload_check.py`` that, loaded through its pipeline
as a user would, it answers as the evaluation report says (both before the promotion gate decides). ``tokenizer.py``
loads the tokenizer and tokenizes each text once, ``generation.py`` applies the recipe's decoding,
the same way everywhere. What differs between tasks is asked of the task family (``tasks/``), never
decided here.
"""
