"""Rejected answers written by the starting model itself (``preference.rejected: starting_model``).

Self-play in the sense of SPIN (Chen et al., 2024, "Self-Play Fine-Tuning Converts Weak Language
Models to Strong Language Models"): the rows hold a prompt and a good answer (a human's, the data's
``chosen``), and the rejected answer of each pair is what the starting model itself answers, decoded
with the recipe's ``generation:`` settings. The preference is real wherever the starting model still
prefers its own answer to the human one, which :mod:`.scoring` measures on held-out pairs before
training (the starting model's ``likelihood_accuracy``); preference tuning then moves it from its own
habits toward the data's answers. A prompt the model already answers exactly as the data does makes
a pair whose answers are the same, which cleaning drops and counts (``chosen equals rejected``).

Each distinct conversation (system, earlier turns, prompt) is answered once, however often it
repeats, and the log shows how far the answers have got.
"""

from __future__ import annotations

import time

import pandas as pd

from finetune_assets.tasks.causal_lm import chat
from finetune_assets.tasks.instruction.conversations import turns_of

PROGRESS_EVERY = 64  # prompts answered between two progress lines


def write_rejected(task, rows: pd.DataFrame, log) -> pd.DataFrame:
    """``rows`` with the starting model's answer as the rejected answer of every pair that has none."""
    from finetune_assets.inference.batching import longest_first
    from finetune_assets.inference.generation import generation_batch_size
    from finetune_assets.models.tokenizer import load_tokenizer
    from finetune_assets.tasks.causal_lm.scoring import generate

    todo = rows["paired"].astype(bool) & (rows["rejected"] == "")
    if not todo.any():
        return rows
    keys = list(zip(rows.loc[todo, "system"], rows.loc[todo, "history"], rows.loc[todo, "prompt"]))
    distinct = list(dict.fromkeys(keys))
    tokenizer = load_tokenizer(task.base_location, task.recipe)
    model = task.load_model(task.base_location)
    task.ready_to_generate(model, tokenizer)
    prompts = [
        chat.prompt_ids(tokenizer, chat.conversation(prompt, None, system, turns_of(history)))
        for system, history, prompt in distinct
    ]
    batch = generation_batch_size(task.recipe)
    order = longest_first([len(prompt) for prompt in prompts]).tolist()  # similar lengths share a chunk
    started, answers = time.monotonic(), {}
    for start in range(0, len(order), PROGRESS_EVERY):
        chunk = order[start : start + PROGRESS_EVERY]
        answers.update(zip(chunk, generate(model, tokenizer, [prompts[i] for i in chunk], batch)))
        if log is not None:
            seconds = time.monotonic() - started
            log.info(
                f"self-play: the starting model answered {len(answers)} of {len(prompts)} distinct prompts "
                f"({seconds:.0f} s, {sum(a['tokens'] for a in answers.values()) / seconds:.0f} tokens/s)"
            )
    written = {key: answers[i]["text"] for i, key in enumerate(distinct)}
    rows = rows.copy()
    rows.loc[todo, "rejected"] = [written[key] for key in keys]
    return rows
