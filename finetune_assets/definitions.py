"""The code location's entry point: ``dagster dev``, ``dagster asset materialize -m
finetune_assets.definitions``, ``dagster definitions validate`` and the ``dg`` CLI load the
Definitions from here (pyproject's ``[tool.dagster]`` and ``[tool.dg]`` point at this module).

The Definitions are built when Dagster calls :func:`defs`, not when this module is imported, so
importing finetune_assets never reads recipe files or builds assets.
"""

import warnings

import dagster as dg

from finetune_assets.defs import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    """Every recipe in the configured recipe folders (see :mod:`finetune_assets.recipes.loading`)."""
    # Dagster's CLI turns `--select 'group:<recipe>'` into AssetSelection.groups(..., include_sources=...)
    # itself, a parameter it marks beta, and warns about its own call on every such command. Nothing of
    # ours uses it; this one message is silenced in the processes that load this code location.
    warnings.filterwarnings("ignore", "Parameter `include_sources` of function `AssetSelection.groups`",
                            dg.BetaWarning)
    return build_definitions()
