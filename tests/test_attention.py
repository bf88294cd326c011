"""Attention with 16-bit tensors on a CPU (``finetune_assets/models/attention.py``): the two products
compute what float32 attention computes, up to bf16 rounding, for decoding steps and for short
training rows under autocast (gradients included); everything else keeps the fused kernel; and the
frozen layers of a LoRA base held in bf16 multiply exactly as autocast did."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from finetune_assets.models import attention, dropout
from finetune_assets.models.precision import Precision
from finetune_assets.tasks.causal_lm import chat, packing

BF16 = {"atol": 2e-2, "rtol": 2e-2}  # bf16 keeps 8 bits of mantissa: a few parts in a thousand per value


def fused(query, key, value, mask=None, causal=False, scale=None):
    """torch's attention in float32 on the same (bf16-rounded) values, key/value heads repeated."""
    repeat = query.shape[1] // key.shape[1]
    key, value = (t.float().repeat_interleave(repeat, dim=1) for t in (key, value))
    output = torch.nn.functional.scaled_dot_product_attention(
        query.float(), key, value, mask, is_causal=causal, scale=scale
    )
    return output.transpose(1, 2)


@pytest.fixture
def fused_calls(monkeypatch):
    """The shapes of the queries that reached transformers' sdpa (the fused kernel) through the module."""
    calls, sdpa = [], attention.sdpa_attention_forward

    def counted(module, query, *rest, **options):
        calls.append(tuple(query.shape))
        return sdpa(module, query, *rest, **options)

    monkeypatch.setattr(attention, "sdpa_attention_forward", counted)
    return calls


def test_a_decoding_step_matches_float32_attention_with_grouped_heads_and_padding(fused_calls):
    torch.manual_seed(0)
    batch, heads, kv_heads, keys, dim = 4, 6, 2, 23, 16
    query = torch.randn(batch, heads, 1, dim).bfloat16()
    key, value = (torch.randn(batch, kv_heads, keys, dim).bfloat16() for _ in range(2))
    allowed = torch.ones(batch, 1, 1, keys, dtype=torch.bool)
    allowed[1, ..., :5] = False  # a left-padded row
    layer = torch.nn.Module().eval()
    output, weights = attention.two_product_attention(layer, query, key, value, allowed, scaling=0.3)
    assert weights is None and output.shape == (batch, 1, heads, dim) and output.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), fused(query, key, value, allowed, scale=0.3), **BF16)
    unmasked, _ = attention.two_product_attention(layer, query, key, value, None, scaling=0.3)
    assert not torch.allclose(unmasked[1].float(), output[1].float(), atol=1e-3), "the padded keys were masked"
    torch.testing.assert_close(unmasked[0], output[0])
    assert fused_calls == []


@pytest.mark.parametrize("mode", ["causal", "padded", "bidirectional"])
def test_a_short_training_row_under_autocast_matches_float32_attention_and_its_gradients(fused_calls, mode):
    """As in a Llama under the Trainer's bf16 autocast: rotary embeddings hand attention float32
    queries and keys, the values come from a bf16 product. No mask means causal (sdpa's own rule),
    except in an encoder's layer (BERT's ``is_causal = False``), where every key counts."""
    padded = mode == "padded"
    torch.manual_seed(0)
    batch, heads, kv_heads, length, dim = 3, 4, 2, 20, 16
    query, key = (torch.randn(batch, n, length, dim).bfloat16().float().requires_grad_() for n in (heads, kv_heads))
    value = torch.randn(batch, kv_heads, length, dim).bfloat16().requires_grad_()
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = causal.expand(batch, 1, length, length).clone() if padded else None
    if padded:
        mask[2, ..., 15:] = False  # the last row padded on the right: its last 5 keys masked
    layer = torch.nn.Module().train()
    layer.is_causal = mode != "bidirectional"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, _ = attention.two_product_attention(layer, query, key, value, mask)
    assert fused_calls == [] and output.dtype == torch.bfloat16
    grads = torch.autograd.grad(output.float().square().sum(), (query, key, value))

    copies = [t.detach().float().requires_grad_() for t in (query, key, value)]
    expected = fused(*copies, mask=mask, causal=mode == "causal")
    torch.testing.assert_close(output.float(), expected, **BF16)
    for got, want in zip(grads, torch.autograd.grad(expected.square().sum(), copies), strict=True):
        torch.testing.assert_close(got.float(), want, atol=5e-2, rtol=5e-2)


PASSES = {  # the kernels that read and write every element of a tensor
    "aten::" + name
    for name in ("add", "add_", "mul", "mul_", "masked_fill", "masked_fill_", "fill_", "copy_", "clone")
    + ("_softmax", "_softmax_backward_data")
}


def test_the_scores_take_one_pass_before_the_softmax_and_none_after_it_in_the_backward():
    """Between the two products, forward and backward, the only passes over a tensor the size of the
    scores are the mask added in place, the softmax and its backward, and the probabilities' casts to
    the values' dtype and back: no scale over the scores, no ``masked_fill`` (five times slower than
    an add), and no zeroed scores-sized gradient that autograd builds for an in-place op on a view."""
    import math

    from torch.profiler import profile

    torch.manual_seed(0)
    batch, heads, kv_heads, length, dim = 3, 4, 2, 20, 16
    query = torch.randn(batch, heads, length, dim).bfloat16().float()
    key = torch.randn(batch, kv_heads, length, dim).bfloat16().float().requires_grad_()
    value = torch.randn(batch, kv_heads, length, dim).bfloat16().requires_grad_()
    unscaled = query.clone()
    query.requires_grad_()
    mask = torch.ones(length, length, dtype=torch.bool).tril().expand(batch, 1, length, length).clone()
    layer = torch.nn.Module().train()
    with profile(record_shapes=True) as trace:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output, _ = attention.two_product_attention(layer, query, key, value, mask, scaling=0.3)
        output.float().square().sum().backward()
    size, passes = batch * heads * length * length, {}
    for event in trace.events():
        shapes = [shape for shape in event.input_shapes if isinstance(shape, list) and shape]
        if event.name in PASSES and any(math.prod(shape) == size for shape in shapes):
            passes[event.name] = passes.get(event.name, 0) + 1
    assert passes == {"aten::add_": 1, "aten::_softmax": 1, "aten::_softmax_backward_data": 1, "aten::copy_": 2}
    assert torch.equal(query.detach(), unscaled), "the caller's float32 queries are scaled in a copy"


def test_the_fused_kernel_keeps_what_it_does_faster(fused_calls):
    """A prompt's or an evaluation's pass (no training), rows longer than TRAINING_MAX_KEYS, float32
    without autocast, and T5's position bias all go to sdpa."""
    torch.manual_seed(0)
    layer = torch.nn.Module()

    def call(length, dtype=torch.bfloat16, training=True, **options):
        query, key, value = (torch.randn(1, 2, length, 8, dtype=dtype) for _ in range(3))
        attention.two_product_attention(layer.train(training), query, key, value, None, **options)

    call(attention.TRAINING_MAX_KEYS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        call(1, dtype=torch.float32, training=False)
    assert fused_calls == [], "a short training row in bf16 and a decoding step under autocast take the products"
    call(16, training=False)
    call(attention.TRAINING_MAX_KEYS + 1)
    call(16, dtype=torch.float32)
    call(16, position_bias=torch.zeros(1, 2, 16, 16))
    assert len(fused_calls) == 4


def test_attention_dropout_drops_probabilities_in_training_only(fused_calls):
    """BERT passes its attention dropout (MiniLM's 0.1) while training: the products apply it, and
    a layer in eval mode never does."""
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 2, 16, 8, dtype=torch.bfloat16) for _ in range(3))
    layer = torch.nn.Module().train()
    layer.is_causal = False
    plain, _ = attention.two_product_attention(layer, query, key, value, None, dropout=0.0)
    dropped, _ = attention.two_product_attention(layer, query, key, value, None, dropout=0.5)
    assert not torch.allclose(plain.float(), dropped.float(), atol=1e-2)
    step = (query[:, :, :1], key, value)
    kept, _ = attention.two_product_attention(layer.eval(), *step, None, dropout=0.5)
    torch.testing.assert_close(kept, attention.two_product_attention(layer, *step, None)[0])
    assert fused_calls == []


def test_attention_dropout_draws_its_masks_16_bits_at_a_time(fused_calls):
    """The products drop attention probabilities with finetune_assets/models/dropout.py's draws: with
    the values an identity, the output is the probabilities, zero exactly where that mask drops."""
    torch.manual_seed(0)
    query, key = (torch.randn(2, 2, 16, 16, dtype=torch.bfloat16) for _ in range(2))
    value = torch.eye(16, dtype=torch.bfloat16).expand(2, 2, 16, 16)
    layer = torch.nn.Module().train()
    layer.is_causal = False
    torch.manual_seed(1)
    output, _ = attention.two_product_attention(layer, query, key, value, None, dropout=0.25)
    torch.manual_seed(1)  # the same draws, shaped as the products' (batch, kv heads, groups, rows, keys)
    keep, _ = dropout.keep_mask(torch.Size([2, 2, 1, 16, 16]), torch.bfloat16, 0.25)
    assert torch.equal(output.transpose(1, 2) != 0, keep.view(2, 2, 16, 16).bool())
    assert fused_calls == []


@pytest.fixture
def tiny_llama_model(tiny_llama):
    return AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).train()


@pytest.mark.parametrize("shared_prompt", [False, True])
def test_a_packed_row_under_bf16_training_attends_only_within_its_examples(
    tiny_llama_model, smollm_tokenizer, fused_calls, shared_prompt
):
    """The packing guarantee (``tests/test_packing.py``, float32) holds on the products' path, with
    and without the shared prompt's 4D mask: each example's logits in a packed row are its logits
    alone, up to bf16 rounding."""
    from datasets import Dataset
    from test_packing import each_example

    pairs = [("Hi", "Hello!"), ("Can you count?", "One, two, three."), ("Bye", "See you."), ("Who?", "Me.")]
    examples = Dataset.from_list([chat.encode(smollm_tokenizer, chat.conversation(q, a), 96) for q, a in pairs])
    shared = packing.shared_prompt_length(examples) if shared_prompt else 0
    rows = packing.pack(examples, attention.TRAINING_MAX_KEYS, shared)
    assert max(rows["examples"]) > 1, "some row holds several examples"
    batch = packing.PackedCollator(smollm_tokenizer.pad_token_id, shared)(list(rows))
    batch.pop("labels")
    alone = {}
    with attention.product_attention(tiny_llama_model), torch.autocast("cpu", dtype=torch.bfloat16):
        packed = tiny_llama_model(**batch).logits.float()
        for ids in examples["input_ids"]:
            alone[tuple(ids)] = tiny_llama_model(input_ids=torch.tensor([ids])).logits[0].float()
    seen = 0
    for row, start, end, ids in each_example(rows, shared):
        torch.testing.assert_close(packed[row, start:end], alone[ids][shared:], atol=5e-2, rtol=5e-2)
        torch.testing.assert_close(packed[row, :shared], alone[ids][:shared], atol=5e-2, rtol=5e-2)
        seen += 1
    assert seen == len(examples)
    assert fused_calls == [] and tiny_llama_model.config._attn_implementation == "sdpa"


def test_frozen_layers_held_in_bf16_multiply_exactly_as_autocast_did(tiny_llama_model):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(input_ids=ids).logits
    assert Precision("bf16", "cpu", "test", native=False).for_training(model) == 0
    assert Precision("fp32", "cpu", "test").for_training(model) == 0
    cast = Precision("bf16", "cpu", "test").for_training(model)
    assert cast == 2 * 7, "per layer q, k, v, o (q and v inside their LoRA wrappers) and the MLP's three"
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert {d for name, d in dtypes.items() if "lora_" in name or "embed" in name or "norm" in name} == {
        torch.float32
    }, "the adapter, the (tied) embeddings and the norms stay float32"
    assert dtypes["base_model.model.model.layers.0.mlp.up_proj.weight"] == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)
