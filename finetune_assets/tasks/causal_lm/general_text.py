"""Perplexity on general text: how much of plain language a causal LM kept while it was tuned.

Fine-tuning on a narrow data set can make a model worse at everything else (catastrophic
forgetting). The project ships a small probe of everyday English paragraphs
(``finetune_assets/probes/general_text.jsonl``); every token of every paragraph after the first is
scored, with the same batched negative log-likelihood as the answers of the test split
(:func:`finetune_assets.tasks.causal_lm.scoring.response_nll`), so base and tuned model are
compared on identical tokens. The ``forgetting`` check compares the two figures.
"""

from __future__ import annotations

import json
import math
from importlib.resources import files

PROBE = "general_text.jsonl"


def probe_texts() -> list[str]:
    """The shipped paragraphs, in file order."""
    lines = files("finetune_assets.probes").joinpath(PROBE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def perplexity(model, tokenizer, batch_size: int) -> float:
    """exp(mean negative log-likelihood) of ``model`` over every predicted token of the probe."""
    from datasets import Dataset

    from finetune_assets.tasks.causal_lm.scoring import collator, response_nll

    ids = [tokenizer(text)["input_ids"] for text in probe_texts()]
    rows = Dataset.from_dict(
        {
            "input_ids": ids,
            "attention_mask": [[1] * len(row) for row in ids],
            "labels": ids,
            "length": [len(row) for row in ids],
        }
    )
    sums, counts = response_nll(model, rows, collator(tokenizer), batch_size)
    return math.exp(float(sums.sum() / counts.sum()))
