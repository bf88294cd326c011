"""The project's own ``evaluate`` metric modules, loaded by local path.

``evaluate.load("accuracy")`` fetches a script from the hub, which fails offline; these modules
compute the same figures with scikit-learn, rouge-score and sacrebleu, and load anywhere.
"""

from __future__ import annotations

from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).parent


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load ``metrics/<name>/<name>.py`` through ``evaluate`` without touching the network."""
    return evaluate.load(str(METRICS_DIR / name))
