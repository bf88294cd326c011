"""The pipeline: the six stages of the chain as plain Python, and how one stage is run.

``chain.py`` is the one table of stages (upstream, artifact file, description, code version,
recipe sections read, the functions); ``stages.py`` is the work each does; ``runner.py`` runs any
stage the same way (fingerprint, cache, atomic folder); ``caching.py`` and ``artifacts.py`` are
the records and folders on disk; ``promotion.py`` is the gate that picks the champion export.
Nothing here imports Dagster: :mod:`finetune_assets.defs` wraps it into assets, and scripts and
benchmarks call it directly. The heavy work itself lives in ``data/``, ``training/`` and ``tasks/``.
"""
