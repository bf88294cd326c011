"""sacreBLEU for ``evaluate``: the corpus BLEU score (0 to 100, as sacreBLEU reports it), one
reference per prediction, sacreBLEU's default 13a tokenization."""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = "Corpus-level sacreBLEU score with one reference per prediction."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated texts.
    references (list of str): reference texts, one per prediction.
Returns:
    bleu (float): corpus BLEU, 0 to 100.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        return {"bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score)}
