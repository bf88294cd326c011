"""Everything Dagster sees, and nothing else: the asset factory (``assets.py``), the project's
checks converted into Dagster's (``checks.py``) and their latest results on a lineage, read from the instance for the promotion
gate (``check_results.py``), jobs, schedules, new-data sensors and automation conditions
(``automation.py``), the
resources (``resources.py``: artifact store, the IO manager that passes references between assets,
per-run settings; ``training.py``: where the training process runs, through Dagster Pipes, locally
or in a Kubernetes pod whose spec ``kubernetes.py`` builds from the recipe), the conversion of
stage metadata into Dagster's (``metadata.py``), what a recipe needs of a machine as tags and
definition metadata on its assets (``requirements.py``), the run launcher that lets run monitoring see
dead runs (``run_launcher.py``, named in ``dagster_home/dagster.yaml``), and
:func:`build_definitions`, which assembles them for a set of recipe folders (``build.py``), and the
``finetune_assets.FineTune`` component, one recipe in a ``dg`` project's ``defs.yaml``
(``fine_tune.py``).

The work itself is plain Python in :mod:`finetune_assets.pipeline`; this folder only wires it
into Dagster. A project using finetune_assets as a library calls :func:`build_definitions` or
adds ``FineTune`` components. This folder is also this project's ``dg`` defs folder:
:mod:`finetune_assets.definitions` autoloads it, so what ``dg scaffold defs`` writes here is served;
its modules keep no Dagster objects at module level, so autoloading them adds nothing.
"""

from finetune_assets.defs.build import build_definitions

__all__ = ["build_definitions"]
