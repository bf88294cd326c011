"""Dropout on a CPU with its random mask drawn 16 bits at a time, where torch draws a whole random
number for every element.

Why: torch's CPU dropout fills a tensor with ``bernoulli_`` (one generator call per element), then
divides and multiplies. On 2 cores of an AMD EPYC Zen 4 with torch 2.13 (2026-12-07, a (64, 110, 384)
tensor), its forward and backward together cost 6.5 ns an element in bf16 and 6.9 in float32,
against 2.3 and 2.6 here; ``bernoulli_`` alone was 0.19 of a bf16 MiniLM training step (the
quickstart's), the largest share after the matrix products, and a larger one wherever faster bf16
products shrink the rest (AMX). Here one 64-bit draw of torch's own generator gives four uniform
16-bit numbers, and an element is dropped where its number falls among the lowest
``round(p x 65536)``: ``p`` is kept to 1/65536 (0.1 drops 6554 of 65536), and the kept elements are
scaled by the exact inverse of the kept share, so the expected output is the input, as with torch's.

The generator is torch's default CPU one, so ``torch.manual_seed`` repeats a run's masks, and
activation checkpointing, which restores the generator's state before it recomputes a forward,
recomputes the same masks (``tests/test_dropout.py`` holds both). On a GPU torch's own fused dropout
stays: it draws in parallel, and so does a compiled model (``training.compile``), whose inductor
fuses the mask into its own kernels.

The trainer switches a model's ``nn.Dropout`` layers to :class:`CpuDropout` for a run
(:func:`cpu_dropout`, which switches them back); 16-bit attention on a CPU calls :func:`dropout`
on its probabilities (:mod:`finetune_assets.models.attention`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

DRAWS = 1 << 16  # the values a 16-bit draw takes


def keep_mask(shape: torch.Size, dtype: torch.dtype, p: float) -> tuple[torch.Tensor, float]:
    """A 0/1 tensor of ``shape`` in ``dtype`` that keeps each element with probability
    ``1 - round(p x 65536) / 65536``, and the scale that makes the kept elements' expectation the input."""
    count, dropped = math.prod(shape), round(p * DRAWS)
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits random
    draws = words.view(torch.int16)[:count].view(shape)  # four uniform 16-bit numbers a word
    return (draws >= dropped - DRAWS // 2).to(dtype), DRAWS / (DRAWS - dropped)


class _MaskedDropout(torch.autograd.Function):
    """The input times a 0/1 mask and the scale; the gradient through the same mask. Only the mask is
    kept for the backward, in the input's dtype (as torch's CPU dropout keeps its noise)."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, p: float) -> torch.Tensor:
        keep, scale = keep_mask(inputs.shape, inputs.dtype, p)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return (inputs * keep).mul_(scale)  # times 0 or 1 is exact: one rounding, at the scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None


def dropout(inputs: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout(inputs, p, training)``, with the mask drawn 16 bits at a time on
    a CPU where ``p`` rounds to a share of 65536 strictly between none and all; torch's own elsewhere,
    and under ``torch.compile``, whose inductor draws and applies the mask in its own fused kernels."""
    if not training or p == 0:
        return inputs
    if inputs.device.type != "cpu" or not 0 < round(p * DRAWS) < DRAWS or torch.compiler.is_compiling():
        return torch.nn.functional.dropout(inputs, p, training)
    return _MaskedDropout.apply(inputs, p)


class CpuDropout(torch.nn.Dropout):
    """``nn.Dropout`` computed by :func:`dropout` (``inplace`` is not honoured: a new tensor always)."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return dropout(inputs, self.p, self.training)


@contextmanager
def cpu_dropout(model: torch.nn.Module, enabled: bool = True):
    """``model``'s plain ``nn.Dropout`` layers compute as :class:`CpuDropout` inside the block (where
    ``enabled``); the block gets how many were switched, and they are plain again afterwards."""
    layers = [module for module in model.modules() if type(module) is torch.nn.Dropout] if enabled else []
    for layer in layers:
        layer.__class__ = CpuDropout
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer.__class__ = torch.nn.Dropout
