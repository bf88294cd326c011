"""The pipeline: the six stages of the chain as plain Python, and how one stage is run.

``chain.py`` is the one table of stages (upstream, artifact file, description, code version,
recipe sections read, the functions); ``stages.py`` is the work each does; ``runner.py`` runs any
stage the same way (fingerprint, cache, atomic folder, checkpoint folder for training, then the
stage's finish step with the run's ``facts.py``); ``launching.py`` is how a stage starts a process
(the interface, and a plain subprocess); ``caching.py`` and ``artifacts.py`` are the records and
references on disk, ``atomic.py`` how folders and files are written safely by concurrent runs;
``promotion.py`` is the gate that picks the champion export, ``champion.py`` the champion's files
under a lock, and ``champion_scores.py`` the champion re-scored on a challenger's test rows;
``sweep_report.py`` compares a recipe's sweep variants on the same test rows and picks the one the
gate judges; ``quiet.py`` turns library progress bars off while a stage works; ``quality_gates.py``
judges the model stages' own checks (beats its base model, no overfitting, no forgetting, ...) from
figures their artifacts hold.
Nothing here imports Dagster: :mod:`finetune_assets.defs` wraps it into assets, and scripts and
benchmarks call it directly. The heavy work itself lives in ``data/``, ``training/`` and ``tasks/``.
"""
