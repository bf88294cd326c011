"""Attention with 16-bit tensors on a CPU: as two plain matrix products where torch's fused kernel is
slow there (a decoding step, and training on short rows), transformers' ``sdpa`` everywhere else.

Why: on a CPU with 16-bit tensors, ``scaled_dot_product_attention`` takes its flash kernel, built
for long query blocks. Measured on 2 cores of an AMD EPYC Zen 4 with torch 2.13 (bf16, SmolLM2's 9
query heads over 3 key/value heads, 2026-12-07):

- one query token against a KV cache (every decoding step): 5 to 9 times slower than the two
  products as computed here (10.2 ms against 1.4 ms for 48 rows over 400 cached tokens, 0.72
  against 0.13 ms for 16 rows over 80); over 30 layers, a large share of a long answer's step;
- forward and backward in training on rows of up to 128 tokens: 1.8 to 3.8 times slower (27
  against 12 ms for 16 rows of 96 tokens, 115 against 65 ms for 48 rows of 128, 49 against 13 ms
  for 48 rows of 64), its bf16 backward being slower than its own float32 one. Between 160 and 256
  tokens the fused kernel overtakes the products, hence :data:`TRAINING_MAX_KEYS`. Forward passes
  without gradients (a prompt's, evaluation's) came out either way by the shapes, so they keep
  ``sdpa``.

Here the query heads are grouped under the key/value head they share (grouped-query attention
needs no copies of the keys), the scores are computed and normalised in float32 (bf16 keys are exact
in float32, so this is at least as precise as the fused kernel; masked scores are lowered by
float32's lowest value rather than set to -inf, so a row with nothing to attend to stays finite),
and the probabilities meet the values in the values' dtype, as the fused kernel does (after
attention dropout, where training asks for it). Float32 tensors, a GPU, T5's position bias and
soft-capping all keep ``sdpa``. Before the softmax the scores take a single pass, the mask added in
place as a bias whose backward costs nothing (:func:`_mask`); the scale goes on the queries, which
have fewer elements.

Registered with transformers' ``AttentionInterface`` under :data:`NAME` (its masks are ``sdpa``'s).
The trainer switches its model to it for a run and evaluation for its decoding
(:func:`product_attention`, which restores ``sdpa``, so nothing saved names it); the export checks
that repeat the report's answers through the export's own pipeline switch their model for good
(:func:`use_product_attention`): the two attentions round differently, and greedy decoding takes
another word where two were nearly tied, so an export decoding with the other attention repeated
only 2 of 4 of the report's chat answers in one run (the shipped ``chatbot_sft``).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from finetune_assets.models.dropout import dropout as drop

NAME = "finetune_assets_products"
TRAINING_MAX_KEYS = 128  # training rows up to this long take the products (see the module docstring)


def compute_dtype(value: torch.Tensor) -> torch.dtype:
    """The dtype attention multiplies in: autocast's where it is on (training's mixed precision, whose
    rotary embeddings hand attention float32 queries and keys), else the values' own."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else value.dtype


def takes_products(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs) -> bool:
    """Whether this call is one the products serve faster than the fused kernel: 16-bit on a CPU, a
    decoding step or a training row of at most :data:`TRAINING_MAX_KEYS` keys, nothing ``sdpa``
    alone supports."""
    if query.device.type != "cpu" or compute_dtype(value) == torch.float32:
        return False
    if any(kwargs.get(name) is not None for name in ("position_bias", "softcap")):
        return False
    return query.shape[2] == 1 or (module.training and key.shape[2] <= TRAINING_MAX_KEYS)


def two_product_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    """``sdpa_attention_forward``'s contract (output ``(batch, query length, heads, head dim)``, no
    weights): the two products where :func:`takes_products` says so, else ``sdpa``."""
    if not takes_products(module, query, key, value, **kwargs):
        key = key.to(value.dtype)  # a decoding cache's float32 keys (inference/kv_cache.py)
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal=is_causal, **kwargs
        )
    batch, heads, length, head_dim = query.shape
    kv_heads, keys, dtype = key.shape[1], key.shape[2], compute_dtype(value)
    rows = heads // kv_heads * length  # a key/value head's grouped query rows
    with torch.autocast("cpu", enabled=False):  # the scores in float32 even under autocast
        # the queries cast and laid out for the batched product in one pass, then scaled in place:
        # fewer elements than the scores (a decoding cache's keys are read where they lie)
        grouped = _float32(query).mul_(scaling or head_dim**-0.5).view(batch * kv_heads, rows, head_dim)
        keys_t = key.float().reshape(batch * kv_heads, keys, head_dim).transpose(1, 2)
        scores = torch.bmm(grouped, keys_t)
        causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        _mask(scores.view(batch, kv_heads, heads // kv_heads, length, keys), attention_mask, causal)
        probabilities = scores.softmax(dim=-1)
        if module.training and dropout:
            probabilities = drop(probabilities, dropout)  # its mask drawn 16 bits at a time (models/dropout.py)
        probabilities = probabilities.to(dtype).view(batch, kv_heads, rows, keys)
        output = torch.matmul(probabilities, value.to(dtype)).view(batch, heads, length, head_dim)
    return output.transpose(1, 2), None


def _float32(tensor: torch.Tensor) -> torch.Tensor:
    """A new contiguous float32 copy of ``tensor``, new even where ``tensor`` is one already (it is
    scaled in place)."""
    return tensor.to(torch.float32, memory_format=torch.contiguous_format, copy=True)


def _mask(scores: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool) -> None:
    """Lower by float32's lowest value, in place, the ``scores`` (a view: batch, key/value heads,
    grouped heads, length, keys) of the keys a query may not attend to: those ``attention_mask``
    (True, or an added 0.0, where it may) rules out, or without a mask the later keys where
    ``causal`` and more than one query is asked (transformers' ``sdpa`` passes no mask where a
    plain causal one would do).

    The mask becomes a bias on its own small shape, added outside autograd: a constant added passes
    the gradient through unchanged (softmax already gives the masked keys none), where autograd
    would record an in-place add on a view and, in the backward, zero and copy a gradient of the
    scores' size; and adding costs a fifth of ``masked_fill``."""
    length, keys = scores.shape[-2:]
    if attention_mask is None:
        if length == 1 or not causal:
            return
        attention_mask = torch.ones(length, keys, dtype=torch.bool, device=scores.device).tril(keys - length)
    bias = attention_mask.unsqueeze(1) if attention_mask.dim() == 4 else attention_mask  # heads broadcast
    if bias.dtype == torch.bool:
        bias = torch.where(bias, 0.0, torch.finfo(scores.dtype).min)
    with torch.no_grad():
        scores.add_(bias)


AttentionInterface.register(NAME, two_product_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def sixteen_bit_on_cpu(model) -> bool:
    """Whether ``model``'s attention computes in 16 bits on a CPU (its weights' dtype, or autocast's),
    as decoding steps that take the products do."""
    if model.device.type != "cpu":
        return False
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else model.dtype
    return dtype != torch.float32


def use_product_attention(model) -> bool:
    """Switch ``model`` to :func:`two_product_attention` where it uses ``sdpa`` and its class takes
    registered attention functions; whether it did."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    if not getattr(model, "_supports_attention_backend", False):
        return False
    model.set_attn_implementation(NAME)
    return True


@contextmanager
def product_attention(model, enabled: bool = True):
    """``model`` computes attention with :func:`two_product_attention` inside the block (where
    ``enabled`` and :func:`use_product_attention` can switch it, which the block gets); ``sdpa``
    comes back afterwards."""
    switched = enabled and use_product_attention(model)
    try:
        yield switched
    finally:
        if switched:
            model.set_attn_implementation("sdpa")
