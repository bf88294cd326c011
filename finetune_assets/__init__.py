"""finetune_assets: fine-tuning as Dagster software-defined assets, one recipe per asset group.

Importing the package does nothing heavy: no torch, no transformers, no Definitions. Dagster
loads the Definitions from :mod:`finetune_assets.definitions`; a project of its own builds them
with :func:`finetune_assets.defs.build_definitions`.
"""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the Trainer forks dataloader workers
