"""Dropout with 16-bit draws (finetune_assets/models/dropout.py): the share it drops, its expectation,
its gradient, seeded repeats, and the same masks where activation checkpointing recomputes a forward."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertForSequenceClassification

from finetune_assets.models import dropout


def test_each_of_a_words_four_draws_drops_the_rounded_share():
    torch.manual_seed(0)
    ones = torch.ones(1 << 22)  # a million words: each of the four 16-bit lanes a quarter of the elements
    out = dropout.dropout(ones, 0.1)
    dropped = round(0.1 * dropout.DRAWS) / dropout.DRAWS
    for lane in range(4):  # the top lane holds the word's sign bit: it must be as random as the others
        share = (out[lane::4] == 0).float().mean().item()
        sigma = math.sqrt(dropped * (1 - dropped) / (ones.numel() // 4))
        assert abs(share - dropped) < 5 * sigma, f"lane {lane} drops {share:.5f}, not {dropped:.5f}"
    assert out.mean().item() == pytest.approx(1.0, abs=2e-3), "kept elements are scaled so the mean stays"
    assert out.unique().tolist() == [0.0, pytest.approx(1 / (1 - dropped))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_gradient_goes_through_the_forwards_mask_and_scale(dtype):
    torch.manual_seed(1)
    inputs = (torch.rand(64, 33, dtype=torch.float32) + 0.5).to(dtype).requires_grad_()
    out = dropout.dropout(inputs, 0.25)
    assert out.dtype == dtype
    kept = out != 0
    assert 0.65 < kept.float().mean().item() < 0.85
    scale = dropout.DRAWS / (dropout.DRAWS - round(0.25 * dropout.DRAWS))
    torch.testing.assert_close(out[kept], (inputs[kept].float() * scale).to(dtype), rtol=0, atol=0)
    grad = torch.randn(64, 33).to(dtype)
    out.backward(grad)
    torch.testing.assert_close(inputs.grad, torch.where(kept, (grad.float() * scale).to(dtype), 0), rtol=0, atol=0)


def test_a_seed_repeats_the_masks_and_another_seed_changes_them():
    def mask(seed):
        torch.manual_seed(seed)
        return dropout.dropout(torch.ones(1000), 0.5) == 0

    assert torch.equal(mask(3), mask(3))
    assert not torch.equal(mask(3), mask(4))


def test_no_dropout_where_torch_would_not_drop_and_torchs_own_at_the_ends():
    inputs = torch.randn(100)
    assert dropout.dropout(inputs, 0.3, training=False) is inputs
    assert dropout.dropout(inputs, 0.0) is inputs
    assert torch.equal(dropout.dropout(inputs, 1.0), torch.zeros(100)), "torch's: everything dropped"
    assert dropout.dropout(torch.ones(5, 7, 3), 0.5).shape == (5, 7, 3), "sizes not a multiple of four"


def gradients(model, batch, checkpointing: bool, seed: int = 7) -> list[torch.Tensor]:
    if checkpointing:
        model.gradient_checkpointing_enable()
    else:
        model.gradient_checkpointing_disable()
    model.zero_grad()
    torch.manual_seed(seed)
    model(**batch).loss.backward()
    return [parameter.grad.clone() for parameter in model.parameters() if parameter.grad is not None]


def test_activation_checkpointing_recomputes_the_same_masks(tiny_bert):
    model = BertForSequenceClassification.from_pretrained(tiny_bert).train()
    batch = {"input_ids": torch.randint(1000, 2000, (4, 12)), "labels": torch.tensor([0, 1, 1, 0])}
    with dropout.cpu_dropout(model) as switched:
        assert switched == sum(type(m) is dropout.CpuDropout for m in model.modules()) > 0
        plain = gradients(model, batch, checkpointing=False)
        recomputed = gradients(model, batch, checkpointing=True)
        other_masks = gradients(model, batch, checkpointing=False, seed=8)
    for one, other in zip(plain, recomputed, strict=True):
        torch.testing.assert_close(one, other, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(plain, other_masks, strict=True)), "the masks matter"
    assert not any(isinstance(m, dropout.CpuDropout) for m in model.modules()), "plain nn.Dropout again"
