"""The decoding cache that grows in place: it holds what transformers' ``DynamicCache`` holds, writes
each step into its room without copying the cache, keeps float32 keys where asked, and bf16
decoding with it gives exactly the answers it gives with a ``DynamicCache``."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from finetune_assets.inference import decoding
from finetune_assets.inference.kv_cache import growing_cache


def steps(seed: int, rows: int = 3, length: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, 2, length, 4, generator=generator, dtype=torch.bfloat16) for _ in range(2)]


def test_steps_are_written_in_place_and_read_as_a_dynamic_cache_reads_them():
    plain = DynamicCache()
    plain.update(*steps(0, length=5), layer_idx=0)
    grown = growing_cache(plain, room=4, float_keys=True)
    layer = grown.layers[0]
    buffer = layer._keys.data_ptr()
    for seed in (1, 2, 3):
        keys, values = grown.update(*steps(seed), layer_idx=0)
        plain_keys, plain_values = plain.update(*steps(seed), layer_idx=0)
        assert keys.dtype == torch.float32 and values.dtype == torch.bfloat16
        assert torch.equal(keys, plain_keys.float()) and torch.equal(values, plain_values)
    assert layer._keys.data_ptr() == buffer, "three steps fit the room: no new buffer, no copy"
    assert grown.get_seq_length() == plain.get_seq_length() == 8


def test_rows_that_leave_and_a_full_room_take_fresh_buffers_that_keep_the_rest():
    plain = DynamicCache()
    plain.update(*steps(0, length=5), layer_idx=0)
    grown = growing_cache(plain, room=1, float_keys=False)
    for cache in (grown, plain):
        cache.update(*steps(1), layer_idx=0)
        cache.batch_select_indices(torch.tensor([0, 2]))
    for seed in (2, 3):  # the first after the rows left, the second past the room
        keys, values = grown.update(*steps(seed, rows=2), layer_idx=0)
        plain_keys, plain_values = plain.update(*steps(seed, rows=2), layer_idx=0)
        assert keys.dtype == torch.bfloat16
        assert torch.equal(keys, plain_keys) and torch.equal(values, plain_values)


def test_bf16_decoding_gives_the_dynamic_cache_s_answers(tiny_llama, smollm_tokenizer, monkeypatch):
    from finetune_assets.tasks.causal_lm import chat

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for weights in model.parameters():
            weights.normal_(0, 0.5)
    model.generation_config.update(max_new_tokens=20, do_sample=False, eos_token_id=None)
    prompts = [chat.prompt_ids(smollm_tokenizer, chat.conversation(q)) for q in ("hi", "how do plants grow", "ok")]
    kinds = []
    with torch.inference_mode():
        grown = decoding.generate_in_rounds(model, prompts, smollm_tokenizer.pad_token_id, set())
        monkeypatch.setattr(decoding, "growing_cache", lambda cache, **_: kinds.append(type(cache)) or cache)
        dynamic = decoding.generate_in_rounds(model, prompts, smollm_tokenizer.pad_token_id, set())
    assert kinds == [DynamicCache]
    assert grown == dynamic and all(len(ids) == 20 for ids in grown)
