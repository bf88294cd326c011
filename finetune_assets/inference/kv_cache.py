"""A KV cache for decoding that grows in place, its keys kept in float32 where the attention reads
them so.

Why: transformers' ``DynamicCache`` appends each step's keys and values with ``torch.cat``, which
copies the whole cache every step, and the two-product attention
(:mod:`finetune_assets.models.attention`) casts every cached key to float32 every step to compute
the scores in float32. Summarizing 38 abstracts on two Zen 4 cores, the copies took 2.2 s and the
casts 1.2 s of 19 s (a profile of ``benchmarks/generation.py``'s pipeline side, 2026-12-07). Here
each layer holds its keys and values in buffers with room for the answers' tokens; a step writes
its token into the room and attention reads a view of the filled part, the keys already in float32
when the products will take them (16-bit attention on a CPU), cast once as they are written.

Written by hand: transformers' ``StaticCache`` also writes in place, but attends over its whole
length every step (the empty room masked), and keeps keys in the model's dtype.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys`` and ``values`` are views of buffers with room to grow.

    Whatever replaces ``keys`` from outside (``batch_select_indices`` as rows leave the batch, a
    crop) is taken into fresh buffers of the same room at the next ``update``."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int, key_dtype: torch.dtype):
        super().__init__()
        self.room, self.key_dtype = room, key_dtype
        self.device, self.is_initialized = keys.device, True
        self._adopt(keys, values)

    def _adopt(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        batch, heads, length, dim = keys.shape
        self._keys = keys.new_empty(batch, heads, length + self.room, dim, dtype=self.key_dtype)
        self._values = values.new_empty(batch, values.shape[1], length + self.room, values.shape[-1])
        self._keys[:, :, :length] = keys
        self._values[:, :, :length] = values
        self._show(length)

    def _show(self, length: int) -> None:
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]
        self._shown = self.keys

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if self.keys is not self._shown:
            self._adopt(self.keys, self.values)
        length, new = self.keys.shape[-2], key_states.shape[-2]
        if length + new > self._keys.shape[-2]:
            self._adopt(self.keys, self.values)
        self._keys[:, :, length : length + new] = key_states
        self._values[:, :, length : length + new] = value_states
        self._show(length + new)
        return self.keys, self.values


def growing_cache(cache: DynamicCache, room: int, float_keys: bool) -> DynamicCache:
    """``cache``'s contents in :class:`GrowingLayer` layers with ``room`` tokens to grow, keys in
    float32 where ``float_keys``."""
    grown = DynamicCache()
    grown.layers = [
        GrowingLayer(layer.keys, layer.values, room, torch.float32 if float_keys else layer.keys.dtype)
        for layer in cache.layers
    ]
    return grown
