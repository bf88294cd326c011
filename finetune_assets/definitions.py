"""The code location's entry point: ``dagster dev``, ``dagster dev -w workspace.yaml``,
``dagster asset materialize -m finetune_assets.definitions``, ``dagster definitions validate`` and
the ``dg`` CLI load the Definitions from here (pyproject's ``[tool.dagster]`` and ``[tool.dg]``
point at this module; ``-m finetune_assets`` reaches it through the package's lazy
``dagster_definitions``).

The Definitions are built when Dagster calls :func:`defs`, not when this module is imported, so
importing finetune_assets never reads recipe files or builds assets.

They are the recipe folders' groups plus whatever ``dg`` autoloads from ``finetune_assets/defs/``,
this project's defs folder: a component that ``dg scaffold defs`` writes there (a
``finetune_assets.FineTune`` recipe, say) is served like any recipe file. The folder's own modules
are factories with no Dagster objects at module level, so autoloading them adds nothing.
"""

import warnings
from pathlib import Path

import dagster as dg

import finetune_assets.defs
from finetune_assets.defs import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    """Every recipe in the configured recipe folders (see :mod:`finetune_assets.recipes.loading`),
    and every component in ``finetune_assets/defs/``."""
    # Dagster's CLI turns `--select 'group:<recipe>'` into AssetSelection.groups(..., include_sources=...)
    # itself, a parameter it marks beta, and warns about its own call on every such command. Nothing of
    # ours uses it; this one message is silenced in the processes that load this code location.
    warnings.filterwarnings("ignore", "Parameter `include_sources` of function `AssetSelection.groups`", dg.BetaWarning)
    # The tree is built from the module, not from pyproject's [tool.dg]: an installed wheel (the
    # container image) has no pyproject.toml, and its defs folder is the same.
    with warnings.catch_warnings():  # the autoloader's own calls of functions it marks preview
        warnings.simplefilter("ignore", dg.PreviewWarning)
        autoloaded = dg.ComponentTree.from_module(
            defs_module=finetune_assets.defs, project_root=Path(__file__).resolve().parents[1]
        ).build_defs()
    return dg.Definitions.merge(build_definitions(), autoloaded)
