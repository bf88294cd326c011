"""Scoring a chat model on held-out prompts with the recipe's reward functions.

Each test prompt is answered twice over: ``reward.generations`` completions sampled as training
samples them (``reward.temperature``, at most ``reward.max_completion_length`` tokens, seeded by
``training.seed``), and one answer decoded as the export decodes (the recipe's ``generation:``
settings, greedy by default). Every completion is scored by every function. The figures:

- ``reward_<name>``: a function's mean over the sampled completions; ``mean_reward``: the mean
  total (the weighted sum of the functions), the promotion metric;
- ``pass_at_k``: the share of prompts with at least one fully correct sample, where fully correct
  means every function gave full marks (at least 1, what the shipped functions give when satisfied);
- ``greedy_accuracy``: the share of prompts whose decoded answer is fully correct, and
  ``greedy_reward`` its mean total;
- ``mean_completion_tokens``: the sampled completions' mean length in tokens.
"""

from __future__ import annotations

import copy

import numpy as np
from transformers import set_seed

from finetune_assets.tasks.reward.rewards import RewardFunction

FULL_MARKS = 1.0


def rewards_of(functions: list[RewardFunction], completions: list[str], rows: list[dict]) -> np.ndarray:
    """Rewards as a (completions, functions) array."""
    return np.array([function.scores(completions, rows) for function in functions]).T.reshape(len(rows), -1)


def figures(functions: list[RewardFunction], sampled: np.ndarray, greedy: np.ndarray, lengths: list[int]) -> dict:
    """The metrics from the rewards of the samples (prompts, k, functions) and of the greedy answers
    (prompts, functions)."""
    weights = np.array([function.weight for function in functions])
    correct = (sampled >= FULL_MARKS).all(axis=-1)
    return {
        "mean_reward": float((sampled @ weights).mean()),
        **{f"reward_{f.__name__}": float(sampled[..., i].mean()) for i, f in enumerate(functions)},
        "pass_at_k": float(correct.any(axis=1).mean()),
        "greedy_accuracy": float((greedy >= FULL_MARKS).all(axis=-1).mean()),
        "greedy_reward": float((greedy @ weights).mean()),
        "mean_completion_tokens": float(np.mean(lengths)),
    }


def sample(model, tokenizer, prompts: list[list[int]], spec, seed: int, batch_size: int) -> list[list[dict]]:
    """``spec.generations`` sampled completions per prompt (``spec``: the recipe's ``reward`` section),
    with the model's own generation settings left as they were."""
    from finetune_assets.tasks.causal_lm.scoring import generate

    kept = model.generation_config
    model.generation_config = copy.deepcopy(kept)
    model.generation_config.update(
        do_sample=True, temperature=spec.temperature, top_p=1.0, num_beams=1, max_new_tokens=spec.max_completion_length
    )
    try:
        set_seed(seed)
        answers = generate(model, tokenizer, [p for p in prompts for _ in range(spec.generations)], batch_size)
    finally:
        model.generation_config = kept
    k = spec.generations
    return [answers[i * k : (i + 1) * k] for i in range(len(prompts))]
