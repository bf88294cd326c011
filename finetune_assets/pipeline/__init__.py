"""The pipeline: the six stages of the chain as plain Python, and how one stage is run.

``chain.py`` is the one table of stages (upstream, artifact file, description, code version,
recipe sections read, the functions), its rows named by ``stage_names.py``; ``stages.py`` is the work each does; ``runner.py``
runs any stage the same way (fingerprint, cache, atomic folder, checkpoint folder for training,
then the checks the stage judges itself and its finish step with the run's ``facts.py``); ``processes.py`` is how a stage starts
a process (the interface, and a plain subprocess); ``caching.py`` and ``artifacts.py`` are the
records and references on disk, ``atomic.py`` how folders and files are written safely by
concurrent runs; ``quiet.py`` turns library progress bars off while a stage works.
Nothing here imports Dagster: :mod:`finetune_assets.defs` wraps it into assets, and scripts and
benchmarks call it directly. The heavy work itself lives in the rooms the stages call: ``data/``,
``training/``, ``inference/``, ``export/`` and ``promotion/``; the checks are declared in ``checks/``.
"""
