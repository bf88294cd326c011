"""Reading prompts into the KV cache before decoding: the shared beginning once, the rest in groups
of similar length; the cache holds what reading each prompt alone would, and fewer tokens are
computed than in one pass over the padded batch."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from finetune_assets.inference import prefill


@pytest.fixture
def model(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for weights in model.parameters():
            weights.normal_(0, 0.5)
    return model


def test_the_shared_beginning_stops_before_any_prompt_s_last_token():
    assert prefill.shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert prefill.shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2, "each prompt keeps its last token"
    assert prefill.shared_prefix_length([[1, 2], [3, 2]]) == 0


def test_groups_fill_up_then_take_rows_of_similar_length(monkeypatch):
    monkeypatch.setattr(prefill, "GROUP_TOKENS", 100)
    lengths = [10, 60, 50, 55, 20, 45, 9]
    found = prefill.groups(lengths)
    assert sorted(row for group in found for row in group) == list(range(len(lengths)))
    assert found[0] == [1, 3, 2], "60 alone holds fewer than 100 padded tokens; 50 is still 0.8 of 60"
    assert found[1] == [5, 4, 0], "45 starts a group; 20 and 10 join while it holds under 100 padded tokens"
    assert found[2] == [6]


def alone(model, prompt):
    """The KV cache after reading ``prompt`` but its last token, on its own."""
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=torch.tensor([prompt[:-1]]), cache=cache, use_cache=True)
    return cache


def test_the_cache_holds_what_each_prompt_read_alone_holds_and_fewer_tokens_are_read(model, monkeypatch):
    monkeypatch.setattr(prefill, "GROUP_TOKENS", 8)  # several groups even for these few short prompts
    shared = [1, 9, 42, 7, 300, 12]
    prompts = [
        shared + middle for middle in ([5, 6, 7, 8, 9, 10, 11, 12], [13], [14, 15, 16, 17, 18, 19, 20], [21, 22])
    ]
    read = []
    model.model.embed_tokens.register_forward_hook(lambda module, args, out: read.append(args[0].numel()))

    input_ids, attention_mask, cache = prefill.prefill(model, prompts, pad_id=0)

    assert len(read) > 2 and read[0] == len(shared), "the shared beginning is read once, then groups"
    assert sum(read) < len(prompts) * (max(map(len, prompts)) - 1), "fewer tokens than the padded batch"
    assert input_ids[:, -1].tolist() == [p[-1] for p in prompts], "the last tokens are left for generate"
    for row, prompt in enumerate(prompts):
        real = attention_mask[row, :-1].bool()
        assert input_ids[row, :-1][real].tolist() == prompt[:-1]
        for (keys, values, _), (own_keys, own_values, _) in zip(cache, alone(model, prompt), strict=True):
            torch.testing.assert_close(keys[row, :, real], own_keys[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(values[row, :, real], own_values[0], atol=1e-5, rtol=1e-4)


def test_one_token_prompts_without_a_shared_beginning_decode_as_plain_generate(model, monkeypatch):
    """With nothing shared, the one-token prompts' group reads nothing: its rows are all pads."""
    from finetune_assets.inference.decoding import generate_in_rounds

    monkeypatch.setattr(prefill, "GROUP_TOKENS", 1)  # groups [5, 6, 7, 8], [10, 11], then [9] and [12]
    prompts = [[5, 6, 7, 8], [9], [10, 11], [12]]
    model.generation_config.update(max_new_tokens=6, do_sample=False, eos_token_id=None)
    with torch.inference_mode():
        answers = generate_in_rounds(model, prompts, pad_id=0, stops=set())
        for prompt, answer in zip(prompts, answers, strict=True):
            alone = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt)))
            assert answer == alone[0, len(prompt) :].tolist()


def test_a_prompt_asked_several_times_is_read_once(model):
    prompts = [[1, 2, 3, 4, 5], [1, 2, 6, 7], [1, 2, 3, 4, 5], [1, 2, 6, 7], [1, 2, 3, 4, 5]]
    read = []
    model.model.embed_tokens.register_forward_hook(lambda module, args, out: read.append(args[0].numel()))
    _, attention_mask, cache = prefill.prefill(model, prompts, pad_id=0)
    assert read == [2, 2 * 2], "the shared [1, 2] once, then [3, 4] and [6] once each (one group, 2 wide)"
    for row, prompt in enumerate(prompts):
        real = attention_mask[row, :-1].bool()
        for (keys, _, _), (own_keys, _, _) in zip(cache, alone(model, prompt), strict=True):
            torch.testing.assert_close(keys[row, :, real], own_keys[0], atol=1e-5, rtol=1e-4)
