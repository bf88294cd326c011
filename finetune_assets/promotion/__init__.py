"""Which export users get: the champion, and the rules that change it.

``gate.py`` is the promotion gate (a challenger replaces the champion only if nothing blocks it and
it beats the champion on the same test rows); ``champion.py`` keeps the champion's files
(``champion.json``, the ``current`` link, the decision history) under an inter-process lock;
``champion_scores.py`` re-scores the champion on a challenger's test rows; ``sweep_report.py``
compares a recipe's sweep variants on the same rows and picks the one the gate judges;
``decision.py`` is the gate's decision as a typed value, and how a decision's text is read back;
``base_champion.py`` hands a recipe whose ``base_model`` is ``recipe:<name>`` that recipe's champion,
pinned once per lineage. The checks
that can block a promotion are declared in :mod:`finetune_assets.checks`.
"""
