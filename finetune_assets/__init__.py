"""finetune_assets: fine-tuning as Dagster software-defined assets, one recipe per asset group."""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the Trainer forks dataloader workers

from finetune_assets.definitions import build_definitions  # noqa: E402

defs = build_definitions()

__all__ = ["build_definitions", "defs"]
