"""What the three metric modules share: their ``evaluate`` description, built from three values.

A metric module is a script that ``evaluate.load`` copies into its modules cache and imports
there, so it cannot import a sibling file relatively; it imports this module absolutely
(``finetune_assets.metrics.described``), which works wherever the package is installed.
This is a decorator, not a base class: ``evaluate`` takes the first ``EvaluationModule``
subclass it finds in the script's namespace as the metric, and an imported base would be it.
"""

from __future__ import annotations

import datasets
import evaluate


def described(description: str, inputs_description: str, value_type: str):
    """Give an ``evaluate.Metric`` subclass its docstring and its ``_info()``.

    ``value_type`` is the ``datasets.Value`` dtype of one prediction and one reference
    (``"string"`` for texts, ``"int64"`` for label ids).
    """

    def info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=description,
            citation="",
            inputs_description=inputs_description,
            features=datasets.Features(
                {"predictions": datasets.Value(value_type), "references": datasets.Value(value_type)}
            ),
        )

    def decorate(cls: type[evaluate.Metric]) -> type[evaluate.Metric]:
        cls.__doc__ = f"{description}\n\n{inputs_description}"
        cls._info = info
        return cls

    return decorate
