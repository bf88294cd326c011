"""One check abstraction for the data checks and the model's quality gates.

A :class:`~finetune_assets.checks.declaration.Check` declares one check: its name, the stage whose
artifact it judges, a description for a reviewer, the judge (recipe and artifact in, a typed
:class:`~finetune_assets.checks.declaration.Outcome` with its figures out), its severity and when it
applies, both read from the recipe, and who judges it: Dagster after the asset materialized (the
data checks, ``data.py``) or the stage itself on its own artifact before its finish step decides
(the quality gates and the export's checks, ``quality_gates.py``). ``registry.py`` holds every
declared check and answers which apply to a recipe. Nothing here imports Dagster: the one conversion
into ``AssetCheckSpec``, ``@asset_check`` and ``AssetCheckResult`` is :mod:`finetune_assets.defs.checks`.
"""
