"""The training process, and nothing else: what runs between "here are the tokenized splits" and
"here is the checkpoint".

``run.py`` is the process's entry point (``python -m finetune_assets.training.run``, with or without
Dagster); ``command.py`` builds the command that starts it the way the recipe's
``compute.launcher`` says (alone, ``torchrun``, ``accelerate launch``) and tells a process its rank;
``trainer.py`` runs the Hugging Face Trainer, ``progress.py`` streams its progress into the log,
``tracking.py`` checks and places the experiment trackers of ``training.report_to``, and
``checkpoints.py`` decides which checkpoint may be resumed, ``failure.py`` records a failed
training for the launching step to report and judge (retry or not). How a model is loaded for a method
(full, LoRA, QLoRA) and in which precision lives in :mod:`finetune_assets.models`; what differs
between tasks is asked of the task family (``tasks/``), never decided here.
"""
