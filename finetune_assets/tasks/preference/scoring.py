"""Scoring a chat model on held-out preference pairs: which answer it finds more likely, by how much,
and the implicit reward of preference tuning against the starting model.

A model's log-probability of an answer is the sum over the answer's tokens (its EOS included) of
log p(token | everything before it), read off the rows :mod:`finetune_assets.tasks.causal_lm.chat`
encodes, exactly the tokens the loss is on. ``preference_accuracy`` is the share of pairs whose
chosen answer gets the higher log-probability: measured on one model alone, so the starting model,
the tuned model and the champion are compared on the same rows by the same figure. DPO's implicit
reward r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)) needs the reference too: :func:`rewards`
computes it from the tuned and the starting model's figures on the same pairs (``reward_accuracy``:
the share of pairs whose chosen answer earns the higher reward).
"""

from __future__ import annotations

import numpy as np

ANSWER_COLUMNS = ("input_ids", "attention_mask", "labels", "length")


def answer_logps(model, pairs, tokenizer, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the log-probability of its chosen answer and of its rejected one."""
    from finetune_assets.tasks.causal_lm import scoring

    collator = scoring.collator(tokenizer)
    chosen, _ = scoring.response_nll(model, pairs, collator, batch_size)
    rejected_rows = pairs.select_columns([f"rejected_{c}" for c in ANSWER_COLUMNS])
    rejected_rows = rejected_rows.rename_columns({f"rejected_{c}": c for c in ANSWER_COLUMNS})
    rejected, _ = scoring.response_nll(model, rejected_rows, collator, batch_size)
    return -chosen, -rejected


def pair_metrics(chosen: np.ndarray, rejected: np.ndarray) -> dict[str, float]:
    """The figures one model earns on the pairs."""
    return {
        "preference_accuracy": float(np.mean(chosen > rejected)),
        "logp_margin": float(np.mean(chosen - rejected)),
        "chosen_logp": float(np.mean(chosen)),
        "rejected_logp": float(np.mean(rejected)),
    }


def rewards(tuned: dict, base: dict, beta: float) -> dict[str, float]:
    """The implicit rewards of the tuned model against the starting one, from both models' per-pair
    log-probabilities (``details`` of their evaluations)."""
    chosen = beta * (np.asarray(tuned["chosen_logp"]) - np.asarray(base["chosen_logp"]))
    rejected = beta * (np.asarray(tuned["rejected_logp"]) - np.asarray(base["rejected_logp"]))
    return {
        "reward_accuracy": round(float(np.mean(chosen > rejected)), 4),
        "reward_margin": round(float(np.mean(chosen - rejected)), 4),
        "chosen_reward": round(float(np.mean(chosen)), 4),
        "rejected_reward": round(float(np.mean(rejected)), 4),
    }
