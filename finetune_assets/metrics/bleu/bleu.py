"""sacreBLEU for ``evaluate``: the corpus BLEU score (0 to 100, as sacreBLEU reports it), one
reference per prediction, sacreBLEU's default 13a tokenization."""

import evaluate
import sacrebleu

from finetune_assets.metrics.described import described

_DESCRIPTION = "Corpus-level sacreBLEU score with one reference per prediction."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated texts.
    references (list of str): reference texts, one per prediction.
Returns:
    bleu (float): corpus BLEU, 0 to 100.
"""


@described(_DESCRIPTION, _KWARGS_DESCRIPTION, value_type="string")
class Bleu(evaluate.Metric):
    def _compute(self, predictions, references):
        return {"bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score)}
