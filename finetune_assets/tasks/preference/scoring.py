"""Scoring a chat model on held-out preference pairs: DPO's implicit reward against the starting
model, and which answer the model alone finds more likely.

A model's log-probability of an answer is the sum over the answer's tokens (its EOS included) of
log p(token | everything before it), read off the rows :mod:`finetune_assets.tasks.causal_lm.chat`
encodes, exactly the tokens the loss is on. The implicit reward of preference tuning,
r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)), scores an answer by how much more likely the
model makes it than the starting model (the reference) does. ``preference_accuracy``, the promotion
metric, is the share of pairs whose chosen answer earns the higher reward. The starting model,
scored against itself, gives every answer reward 0 and so ranks no pair: each tie counts a half,
and its accuracy is 0.5, a coin's. Any model with the same tokenizer is scored the same way (the
tuned model, the champion), always against the recipe's starting model on the same rows.

``likelihood_accuracy`` needs no reference: the share of pairs whose chosen answer the model finds
more likely. It says whether the model would now pick the chosen answer, which preference tuning
approaches only as far as the starting model's own gap allows (docs/preference.md).
"""

from __future__ import annotations

import numpy as np

ANSWER_COLUMNS = ("input_ids", "attention_mask", "labels", "length")
# Rewards closer than this (beta * nats) are a tie: summed float log-probabilities of the same
# model on the same rows differ in the last bits at most.
TIE = 1e-4


def answer_logps(model, pairs, tokenizer, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the log-probability of its chosen answer and of its rejected one."""
    from finetune_assets.tasks.causal_lm import scoring

    collator = scoring.collator(tokenizer)
    chosen, _ = scoring.response_nll(model, pairs, collator, batch_size)
    rejected_rows = pairs.select_columns([f"rejected_{c}" for c in ANSWER_COLUMNS])
    rejected_rows = rejected_rows.rename_columns({f"rejected_{c}": c for c in ANSWER_COLUMNS})
    rejected, _ = scoring.response_nll(model, rejected_rows, collator, batch_size)
    return -chosen, -rejected


def pair_metrics(logps: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray], beta: float) -> dict:
    """The figures one model earns on the pairs, from its and the starting model's log-probabilities
    (each a chosen and a rejected array, pair by pair)."""
    chosen, rejected = logps
    chosen_reward, rejected_reward = beta * (chosen - reference[0]), beta * (rejected - reference[1])
    gap = chosen_reward - rejected_reward
    return {
        "preference_accuracy": float(np.mean(gap > TIE) + 0.5 * np.mean(np.abs(gap) <= TIE)),
        "reward_margin": float(np.mean(gap)),
        "chosen_reward": float(np.mean(chosen_reward)),
        "rejected_reward": float(np.mean(rejected_reward)),
        "likelihood_accuracy": float(np.mean(chosen > rejected)),
        "logp_margin": float(np.mean(chosen - rejected)),
        "chosen_logp": float(np.mean(chosen)),
        "rejected_logp": float(np.mean(rejected)),
    }
