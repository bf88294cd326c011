"""finetune_assets: fine-tuning as Dagster software-defined assets, one recipe per asset group.

Importing the package does nothing heavy: no torch, no transformers, no dagster, no Definitions.
Dagster loads the Definitions from :mod:`finetune_assets.definitions`; a project of its own builds
them with :func:`finetune_assets.defs.build_definitions`, or adds recipes as Dagster components
(``finetune_assets.FineTune``, :mod:`finetune_assets.defs.fine_tune`).

Two names here are lazy, imported on first use: ``FineTune``, the component type (the
``dagster_dg_cli.registry_modules`` entry point names this package, so ``dg`` lists it as
``finetune_assets.FineTune``), and ``dagster_definitions``, the lazy Definitions of
:mod:`finetune_assets.definitions`, so ``dagster dev -m finetune_assets`` finds them too. Neither
can be called ``defs`` or ``definitions``: those names are this package's submodules.
"""

import importlib
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the Trainer forks dataloader workers

_LAZY = {
    "FineTune": ("finetune_assets.defs.fine_tune", "FineTune"),
    "dagster_definitions": ("finetune_assets.definitions", "defs"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'finetune_assets' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    # Dagster's `-m` loader and dg's registry scan look for objects through dir().
    return sorted({*globals(), *_LAZY})
