"""Attention for decoding with 16-bit weights on a CPU: the scores of one new token as two plain
matrix products instead of torch's fused kernel.

Why: each decoding step asks attention for one query token per row against every cached key. On a
CPU with 16-bit tensors, ``scaled_dot_product_attention`` takes its flash kernel, built for long
query blocks; for one query it ran 5 to 9 times slower than the two products as computed here (2
cores of an AMD EPYC Zen 4, torch 2.13: 10.2 ms against 1.4 ms for 48 rows of SmolLM2's 9 heads over
400 cached tokens, 0.72 against 0.13 ms for 16 rows over 80), and over 30 layers that was a large
share of a long answer's decoding step.

Here a query token's heads are grouped under the key/value head they share (grouped-query attention
needs no copies of the keys), the scores are computed and normalised in float32 (the cached keys are
bf16 values, exact in float32, so this is at least as precise as the fused kernel), and the
probabilities meet the values in the weights' dtype, as the fused kernel does. Everything else (the
prompt's forward pass, training, float32 weights, a GPU) keeps transformers' ``sdpa``.

Registered with transformers' ``AttentionInterface`` under :data:`NAME` (its masks are ``sdpa``'s),
and switched on around a decoding call by :func:`decoding_attention`. The export checks that repeat
the report's answers through the export's own pipeline switch its model for good
(:func:`use_decoding_attention`): the two attentions round differently, and greedy decoding takes
another word where two were nearly tied, so an export decoding with the other attention repeated
only 2 of 4 of the report's chat answers in one run (the shipped ``chatbot_sft``).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "finetune_assets_decoding"


def one_query_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """``sdpa_attention_forward``'s contract (output ``(batch, query length, heads, head dim)``, no
    weights); a single 16-bit query token on the CPU takes the two products, anything else ``sdpa``."""
    batch, heads, query_length, head_dim = query.shape
    if (
        query_length != 1
        or query.device.type != "cpu"
        or query.dtype == torch.float32
        or (module.training and dropout)
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
    ):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    kv_heads = key.shape[1]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, head_dim).float()
    keys = key.float().transpose(-1, -2)  # cast, then transpose: casting a transposed view copies slowly
    scores = torch.matmul(grouped, keys) * (scaling or head_dim**-0.5)
    if attention_mask is not None:  # (batch, 1, 1, keys): True, or 0.0, where a key may be attended to
        allowed = attention_mask.view(attention_mask.shape[0], 1, 1, -1)
        scores = scores.masked_fill(~allowed, float("-inf")) if allowed.dtype == torch.bool else scores + allowed
    output = torch.matmul(scores.softmax(dim=-1).to(value.dtype), value)
    return output.reshape(batch, heads, 1, head_dim).transpose(1, 2), None


AttentionInterface.register(NAME, one_query_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_decoding_attention(model) -> bool:
    """Switch ``model`` to :func:`one_query_attention` where it uses ``sdpa`` and its class takes
    registered attention functions; whether it did."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    if not getattr(model, "_supports_attention_backend", False):
        return False
    model.set_attn_implementation(NAME)
    return True


@contextmanager
def decoding_attention(model):
    """``model`` decodes with :func:`one_query_attention` inside the block (where
    :func:`use_decoding_attention` can switch it); ``sdpa`` comes back afterwards."""
    switched = use_decoding_attention(model)
    try:
        yield
    finally:
        if switched:
            model.set_attn_implementation("sdpa")
