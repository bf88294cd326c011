"""ROUGE for ``evaluate``: ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (0 to 1), stemmed,
computed with rouge-score.

ROUGE-Lsum scores the summary sentence by sentence, so texts are split into sentences first.
rouge-score's own splitter needs nltk's punkt data, which cannot be downloaded offline; a simple
split after ``.``, ``!`` or ``?`` followed by white space serves instead.
"""

import re

import evaluate
from rouge_score import rouge_scorer

from finetune_assets.metrics.described import described

_DESCRIPTION = "ROUGE-1/2/L/Lsum F-measures, averaged over the examples (0 to 1), with Porter stemming."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated summaries.
    references (list of str): reference summaries, one per prediction.
Returns:
    rouge1, rouge2, rougeL, rougeLsum (float): mean F-measure over the examples.
"""
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences_per_line(text: str) -> str:
    """One sentence per line, as ROUGE-Lsum expects."""
    return "\n".join(part for part in _SENTENCE_END.split(text.strip()) if part)


@described(_DESCRIPTION, _KWARGS_DESCRIPTION, value_type="string")
class Rouge(evaluate.Metric):
    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
        totals = dict.fromkeys(ROUGE_TYPES, 0.0)
        for prediction, reference in zip(predictions, references):
            scores = scorer.score(sentences_per_line(reference), sentences_per_line(prediction))
            for name in ROUGE_TYPES:
                totals[name] += scores[name].fmeasure
        return {name: total / max(len(predictions), 1) for name, total in totals.items()}
