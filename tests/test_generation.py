"""Generation that uses the hardware: answers that end leave the batch between rounds, and weights
in the dtype the machine runs best; the answers stay those of a plain ``model.generate``."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from finetune_assets.inference import decoding
from finetune_assets.models import attention
from finetune_assets.models.precision import Precision
from finetune_assets.tasks.causal_lm import chat

QUESTIONS = ["hi", "what is the capital of france and why", "tell me a story", "ok", "how do plants grow tall"]


@pytest.fixture
def model_and_prompts(tiny_llama, smollm_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # weights far from the fixture's tiny ones: answers that differ by prompt
        for weights in model.parameters():
            weights.normal_(0, 0.5)
    model.generation_config.update(max_new_tokens=12, do_sample=False, eos_token_id=None)
    prompts = [chat.prompt_ids(smollm_tokenizer, chat.conversation(q)) for q in QUESTIONS]
    return model, prompts, smollm_tokenizer.pad_token_id


def plain(model, prompts, pad_id) -> list[list[int]]:
    """One ``generate`` over the prompts padded on the left."""
    width = max(map(len, prompts))
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=mask)
    return out[:, width:].tolist()


def stop_tokens_ending_rows_early(full: list[list[int]]) -> set[int]:
    """A token generated early in some rows and never in another, as the stop token: some answers
    end within the first round or two, another runs to the last token."""
    for token in dict.fromkeys(token for ids in full for token in ids[:4]):
        if any(token not in ids for ids in full):
            return {token}
    pytest.fail(f"every row generated the same early tokens: {full}")


def test_rows_that_end_leave_the_batch_and_every_answer_is_the_plain_one(model_and_prompts, monkeypatch):
    model, prompts, pad_id = model_and_prompts
    full = plain(model, prompts, pad_id)
    stops = stop_tokens_ending_rows_early(full)
    expected = []
    for ids in full:
        end = next((i for i, token in enumerate(ids) if token in stops), None)
        expected.append(ids if end is None else ids[: end + 1])
    assert any(len(ids) < 12 for ids in expected) and any(len(ids) == 12 for ids in expected)

    widths = []
    generate = model.generate

    def watched(**inputs):
        widths.append(len(inputs["input_ids"]))
        return generate(**inputs)

    monkeypatch.setattr(model, "generate", watched)
    monkeypatch.setattr(decoding, "ROUND_TOKENS", 3)
    with torch.inference_mode():
        answers = decoding.generate_in_rounds(model, prompts, pad_id, stops)
    assert answers == expected
    assert widths[0] == len(QUESTIONS) and widths[-1] < widths[0], f"the batch shrank: {widths}"
    assert len(widths) == 4, "12 tokens in rounds of 3"


def test_rounds_where_no_answer_ended_copy_no_cache(model_and_prompts, monkeypatch):
    """Selecting the rows that go on copies the whole cache: no round does it while every answer runs."""
    from transformers import DynamicCache

    model, prompts, pad_id = model_and_prompts
    selections = []
    monkeypatch.setattr(DynamicCache, "batch_select_indices", lambda cache, indices: selections.append(indices))
    monkeypatch.setattr(decoding, "ROUND_TOKENS", 3)
    with torch.inference_mode():
        answers = decoding.generate_in_rounds(model, prompts, pad_id, set())
    assert answers == plain(model, prompts, pad_id) and selections == []


def test_beam_search_decodes_in_one_call(model_and_prompts):
    model, prompts, pad_id = model_and_prompts
    model.generation_config.update(num_beams=2)
    with torch.inference_mode():
        answers = decoding.generate_in_rounds(model, prompts, pad_id, set())
    assert answers == plain(model, prompts, pad_id)


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_weights_take_bf16_for_inference_only_where_it_is_native(tiny_llama, native, dtype):
    numerics = Precision("bf16", "cpu", "test", native)
    model = numerics.for_inference(AutoModelForCausalLM.from_pretrained(tiny_llama))
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert numerics.inference_metadata()["inference_precision"] == f"{'bf16' if native else 'fp32'} weights"
    assert Precision("fp32", "cpu", "test").inference_dtype() == torch.float32


@pytest.mark.parametrize("dtype, fused_calls", [(torch.bfloat16, 4), (torch.float32, 4 + 2 * 12)])
def test_bf16_decoding_steps_skip_the_fused_kernel_and_the_setting_comes_back(
    model_and_prompts, monkeypatch, dtype, fused_calls
):
    """Inside ``generate_in_rounds`` every attention call of the tiny Llama (2 layers; the prompts'
    shared beginning, then their middles, then 12 single-token steps for 12 new tokens, the first
    reading each prompt's last token) goes through the products' attention; in bf16 only the prompts'
    passes reach sdpa's fused kernel, in float32 every call does and the answers are plain
    ``generate``'s."""
    model, prompts, pad_id = model_and_prompts
    model.to(dtype)
    expected = plain(model, prompts, pad_id)
    query_lengths, fused = [], []
    products, sdpa = attention.two_product_attention, attention.sdpa_attention_forward

    def counted(module, query, *rest, **options):
        query_lengths.append(query.shape[2])
        return products(module, query, *rest, **options)

    def fused_kernel(*arguments, **options):
        fused.append(arguments[1].shape[2])
        return sdpa(*arguments, **options)

    monkeypatch.setitem(attention.AttentionInterface._global_mapping, attention.NAME, counted)
    monkeypatch.setattr(attention, "sdpa_attention_forward", fused_kernel)
    with torch.inference_mode():
        answers = decoding.generate_in_rounds(model, prompts, pad_id, set())
    assert model.config._attn_implementation == "sdpa"
    assert query_lengths[4:] == [1] * (2 * 12) and min(query_lengths[:4]) > 1
    assert len(fused) == fused_calls
    assert len(answers) == len(QUESTIONS) and all(len(ids) == 12 for ids in answers)
    if dtype == torch.float32:
        assert answers == expected


@pytest.mark.parametrize("name", ["chatbot_sft", "paper_summaries"])
def test_the_shipped_generating_recipes_decode_their_test_rows_in_one_batch(name, make_recipe):
    """A batch of 48 made 2.11x plain ``generate``'s chat tokens/s against 1.41x at the default 16
    (``benchmarks/generation.py``, Zen 4): both recipes decode all their scored rows together,
    while a recipe without ``generation.batch_size`` decodes ``eval_batch_size`` prompts at a time."""
    from finetune_assets.inference.generation import generation_batch_size
    from finetune_assets.recipes import SHIPPED_DIR, load_recipe

    shipped = load_recipe(SHIPPED_DIR / f"{name}.yaml")
    assert generation_batch_size(shipped) == 48 > shipped.training.eval_batch_size
    plain = make_recipe(training={"eval_batch_size": 12})
    assert plain.generation.batch_size is None and generation_batch_size(plain) == 12
