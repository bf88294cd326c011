"""Decoding a batch of prompts in rounds, answers that have ended leaving the batch between rounds.

``model.generate`` keeps every row of a batch until its last row ends, so short answers beside one
long answer go on paying for a full row each step. Here the batch decodes a few tokens at a time
(:data:`ROUND_TOKENS`); between rounds, rows whose answer has ended leave it together with their
rows of the KV cache (``DynamicCache.batch_select_indices``), and the next round continues from the
cache instead of reading the prompts again. Every row gets the tokens one ``generate`` call would
have given it: greedy decoding the same ones, sampling draws from the same distributions. Beam
search runs as one call (its beams share the cache). The prompts are read into the cache first by
:func:`finetune_assets.inference.prefill.prefill` (their shared beginning once, the rest in groups
of similar length).

Written by hand around ``generate``: transformers' continuous batching (``generate_batch``) does
this with a paged cache, but it is made for GPUs; on a two-core CPU it decoded several times slower
than plain ``generate``. Decoding steps run their attention through
:func:`finetune_assets.models.attention.product_attention`, which spares a CPU with 16-bit
weights torch's fused kernel where it is slow.
"""

from __future__ import annotations

import torch

from finetune_assets.inference.kv_cache import growing_cache
from finetune_assets.inference.prefill import layout, prefill
from finetune_assets.models.attention import product_attention, sixteen_bit_on_cpu

ROUND_TOKENS = 8  # tokens per round: fewer rounds cost more calls, more let ended rows linger


def generate_in_rounds(model, prompts: list[list[int]], pad_id: int, stops: set[int]) -> list[list[int]]:
    """Each prompt's new tokens (prompts as token ids; ``pad_id`` fills the batch), up to and
    including the first of ``stops`` (or all ``generation_config.max_new_tokens`` of them). Without a
    ``max_new_tokens`` (a total ``max_length`` instead), one call decodes as it would."""
    with product_attention(model) as switched:
        return _generate_in_rounds(model, prompts, pad_id, stops, switched and sixteen_bit_on_cpu(model))


def _generate_in_rounds(model, prompts, pad_id: int, stops: set[int], float_keys: bool) -> list[list[int]]:
    budget, beams = model.generation_config.max_new_tokens, model.generation_config.num_beams
    if budget is None or (beams or 1) > 1:
        input_ids, attention_mask = layout(prompts, pad_id, model.device)[:2]
        new = model.generate(input_ids=input_ids, attention_mask=attention_mask)[:, input_ids.shape[1] :]
        return [until_stop(ids, stops) for ids in new.tolist()]
    input_ids, attention_mask, cache = prefill(model, prompts, pad_id)
    cache = cache and growing_cache(cache, room=budget, float_keys=float_keys)
    start, rows, made = input_ids.shape[1], list(range(len(input_ids))), 0
    answers: list[list[int]] = [[] for _ in rows]
    while rows and made < budget:
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            cache=cache,
            max_new_tokens=min(ROUND_TOKENS, budget - made),
            return_dict_in_generate=True,
        )
        new = out.sequences.shape[1] - input_ids.shape[1]
        made += new
        generated = out.sequences[:, start:].tolist()
        ended = [made >= budget or any(token in stops for token in ids) for ids in generated]
        for row, ids, done in zip(rows, generated, ended, strict=True):
            if done:
                answers[row] = until_stop(ids, stops)
        keep = [i for i, done in enumerate(ended) if not done]
        if not keep:
            break
        cache, attention_mask = out.cache, torch.cat([attention_mask, attention_mask.new_ones(len(rows), new)], dim=1)
        input_ids = out.sequences
        if len(keep) < len(rows):  # selecting copies the whole cache: only when some answer ended
            cache.batch_select_indices(torch.tensor(keep, device=input_ids.device))
            input_ids, attention_mask, rows = input_ids[keep], attention_mask[keep], [rows[i] for i in keep]
    return answers


def until_stop(ids: list[int], stops: set[int]) -> list[int]:
    end = next((i for i, token in enumerate(ids) if token in stops), None)
    return ids if end is None else ids[: end + 1]
