"""Classification metrics for ``evaluate``: accuracy, macro precision/recall/F1, per-class figures
and the confusion matrix, computed with scikit-learn."""

import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from finetune_assets.metrics.described import described

_DESCRIPTION = "Accuracy, macro-averaged precision, recall and F1, per-class figures, confusion matrix."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): true label ids.
    num_labels (int): how many labels exist, so absent classes still get a row and a column.
Returns:
    accuracy, precision_macro, recall_macro, f1_macro (float);
    precision, recall, f1, support (list, one entry per label id);
    confusion_matrix (list of lists: row = true label, column = predicted label).
"""


@described(_DESCRIPTION, _KWARGS_DESCRIPTION, value_type="int64")
class Classification(evaluate.Metric):
    def _compute(self, predictions, references, num_labels):
        labels = list(range(num_labels))
        precision, recall, f1, support = precision_recall_fscore_support(
            references, predictions, labels=labels, zero_division=0
        )
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "precision_macro": float(precision.mean()),
            "recall_macro": float(recall.mean()),
            "f1_macro": float(f1.mean()),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
            "confusion_matrix": confusion_matrix(references, predictions, labels=labels).tolist(),
        }
