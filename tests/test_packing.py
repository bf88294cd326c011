"""Packed causal-LM training (``training.packing``) on the tiny real Llama with SmolLM2's chat
template: a packed row attends only within each of its examples (with the prompt beginning they
share held once per row, and without), the loss on the same examples is the same packed and
unpacked, and a packed training run says what packing did."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml
from datasets import Dataset, DatasetDict

from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.chain import CHAIN
from finetune_assets.recipes import load_recipe
from finetune_assets.tasks import get_task
from finetune_assets.tasks.causal_lm import chat, packing
from finetune_assets.tasks.causal_lm.scoring import collator

# float32 on the CPU: the same example computes the same sums alone and in a packed row, up to the
# order of a few additions (its keys are fewer alone: sdpa's softmax sees masked scores, not fewer)
ATOL = 1e-5
QUESTIONS = [
    ("Hi", "Hello!"),
    ("What is your favourite colour?", "Blue, like the sky on a clear day."),
    ("Can you count to five?", "One, two, three, four, five."),
    ("Who are you?", "A small chat model."),
    ("Tell me a joke.", "Why did the robot cross the road? It was programmed to."),
    ("Bye", "Goodbye, see you soon!"),
]


@pytest.fixture(scope="module")
def examples(smollm_tokenizer):
    return Dataset.from_list([chat.encode(smollm_tokenizer, chat.conversation(q, a), 96) for q, a in QUESTIONS])


@pytest.fixture(scope="module")
def model(tiny_llama):
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    assert loaded.config.use_cache, "the default this test guards against: a KV cache in training"
    return loaded.train()  # as the Trainer runs it (dropout is 0 in the tiny Llama)


def each_example(rows, shared: int):
    """(row, start, end, the example's tokens alone) for every example of the packed ``rows``: its
    own tokens are ``start:end`` of its row, after the row's ``shared`` beginning."""
    for row, (ids, positions) in enumerate(zip(rows["input_ids"], rows["position_ids"], strict=True)):
        for start, end in packing.examples_in(positions, shared):
            yield row, start, end, tuple(ids[:shared] + ids[start:end])


def logits_alone(model, examples) -> dict:
    with torch.no_grad():
        return {tuple(ids): model(input_ids=torch.tensor([ids])).logits[0] for ids in examples["input_ids"]}


def test_a_packed_row_attends_only_within_each_of_its_examples(examples, model, smollm_tokenizer):
    """Without a shared beginning (where attention takes no 4D mask): transformers' own masking,
    from the position ids."""
    rows = packing.pack(examples, 96)
    assert len(rows) < len(examples) and max(rows["examples"]) > 1, "some rows hold several examples"
    batch = packing.PackedCollator(smollm_tokenizer.pad_token_id)(list(rows))
    assert "attention_mask" not in batch and batch["use_cache"] is False
    labels = batch.pop("labels")
    with torch.no_grad():
        packed = model(**batch).logits
        leaky = model(**{**batch, "use_cache": True}).logits  # the library default: plain causal mask
    alone, seen, differs = logits_alone(model, examples), 0, False
    for row, start, end, ids in each_example(rows, 0):
        torch.testing.assert_close(packed[row, start:end], alone[ids], atol=ATOL, rtol=0)
        differs |= start > 0 and not torch.allclose(leaky[row, start:end], alone[ids], atol=ATOL)
        assert labels[row, start] == chat.IGNORE, "an example's first token is never a target"
        seen += 1
    assert seen == len(examples), "every example found whole in some row"
    for row, ids in enumerate(rows["input_ids"]):
        assert (labels[row, len(ids) :] == chat.IGNORE).all(), "the padding after a row's end carries no loss"
    assert differs, "with a KV cache the mask is causal over the whole row: the check above would fail"


def test_a_row_holds_the_shared_prompt_once_and_each_example_computes_what_it_computes_alone(
    examples, model, smollm_tokenizer
):
    shared = packing.shared_prompt_length(examples)
    assert smollm_tokenizer.decode(examples[0]["input_ids"][:shared]).endswith(
        "trained by Hugging Face<|im_end|>\n<|im_start|>user\n"
    ), "SmolLM2's default system prompt and the user turn's opening"
    rows = packing.pack(examples, 96, shared)
    assert len(rows) < len(packing.pack(examples, 96)), "the same length holds more examples"
    assert all(ids[:shared] == examples[0]["input_ids"][:shared] for ids in rows["input_ids"])
    batch = packing.PackedCollator(smollm_tokenizer.pad_token_id, shared)(list(rows))
    assert (
        batch["attention_mask"].shape == (len(rows), 1, *batch["input_ids"].shape[1:] * 2)
        and batch["use_cache"] is False
    )
    labels = batch.pop("labels")
    with torch.no_grad():
        packed = model(**batch).logits
        unmasked = model(**{name: value for name, value in batch.items() if name != "attention_mask"}).logits
    alone, seen, differs = logits_alone(model, examples), 0, False
    for row, start, end, ids in each_example(rows, shared):
        torch.testing.assert_close(packed[row, :shared], alone[ids][:shared], atol=ATOL, rtol=0)
        torch.testing.assert_close(packed[row, start:end], alone[ids][shared:], atol=ATOL, rtol=0)
        differs |= not torch.allclose(unmasked[row, start:end], alone[ids][shared:], atol=ATOL)
        assert labels[row, start] == chat.IGNORE, "an example's first own token is never a target"
        seen += 1
    assert seen == len(examples), "every example found whole in some row"
    assert (labels[:, :shared] == chat.IGNORE).all()
    assert differs, "without the mask (position ids alone) the examples would not see the shared prompt"


def test_the_shared_beginning_stops_before_any_target_and_leaves_each_example_a_token():
    def rows(*pairs):
        return Dataset.from_list([{"input_ids": ids, "labels": labels} for ids, labels in pairs])

    prompt = [chat.IGNORE] * 3
    assert packing.shared_prompt_length(rows(([1, 2, 3, 4], [*prompt, 4]), ([1, 2, 3, 5], [*prompt, 5]))) == 2
    assert packing.shared_prompt_length(rows(([1, 2, 3, 4], [*prompt, 4]), ([1, 2, 3], prompt))) == 2
    assert packing.shared_prompt_length(rows(([1, 2, 8, 4], [*prompt, 4]), ([1, 2, 9, 4], [*prompt, 4]))) == 2
    assert packing.shared_prompt_length(rows(([1, 2, 3, 4], [chat.IGNORE, 2, 3, 4]), ([1, 2, 3, 4], prompt + [4]))) == 0
    assert packing.shared_prompt_length(rows(([7, 2, 3, 4], [*prompt, 4]), ([1, 2, 3, 4], [*prompt, 4]))) == 0
    empty = Dataset.from_dict({"input_ids": [], "labels": []})
    assert packing.shared_prompt_length(empty) == 0 and len(packing.pack(empty, 96)) == 0


def test_only_attention_that_takes_a_boolean_mask_shares_the_prompt(tiny_llama):
    from transformers import AutoModelForCausalLM

    from finetune_assets.models import attention

    def shares(implementation):
        loaded = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation=implementation)
        return packing.takes_a_shared_prompt(loaded)

    assert shares("sdpa") and shares(attention.NAME) and not shares("eager")


@pytest.mark.parametrize("shared_prompt", [False, True])
def test_the_loss_and_gradients_on_the_same_rows_are_the_same_packed_and_unpacked(
    examples, model, smollm_tokenizer, shared_prompt
):
    """Mean over the same answer tokens; with the shared prompt, its states computed once feed every
    example, and its gradient is the sum of what each example's copy received."""
    shared = packing.shared_prompt_length(examples) if shared_prompt else 0
    unpacked = collator(smollm_tokenizer)(list(examples.select_columns(["input_ids", "attention_mask", "labels"])))
    packed = packing.PackedCollator(smollm_tokenizer.pad_token_id, shared)(list(packing.pack(examples, 96, shared)))
    assert (packed["labels"] != chat.IGNORE).sum() == (unpacked["labels"][:, 1:] != chat.IGNORE).sum()
    from test_answer_logits import loss_and_gradients

    loss, gradients, _ = loss_and_gradients(model, unpacked)
    packed_loss, packed_gradients, _ = loss_and_gradients(model, packed)
    assert packed_loss == pytest.approx(loss, rel=1e-5)
    for name, gradient in gradients.items():
        torch.testing.assert_close(packed_gradients[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def test_padding_share_counts_the_pad_tokens_of_batches_padded_to_their_longest():
    rows = [[0] * 4, [0] * 2, [0] * 2, [0] * 4]
    assert packing.padding_share(rows, 4, grouped=False, seed=0) == pytest.approx(1 - 12 / 16)
    assert packing.padding_share(rows, 1, grouped=True, seed=0) == 0


def instruction_recipe(folder, tiny_llama, **training):
    recipe = {
        "task": "instruction",
        "base_model": str(tiny_llama),
        "dataset": {"source": "chat.jsonl"},
        "method": "lora",
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "training": {"batch_size": 4, "max_length": 96, "learning_rate": 1e-2, "logging_steps": 1, **training},
    }
    (folder / "chat.yaml").write_text(yaml.safe_dump(recipe))
    return load_recipe(folder / "chat.yaml")


def test_packing_is_in_the_training_fingerprint_and_refused_outside_instruction(tmp_path, tiny_llama):
    plain, packed = (instruction_recipe(tmp_path, tiny_llama, packing=on) for on in (False, True))
    assert CHAIN["finetuned_model"].version(plain) != CHAIN["finetuned_model"].version(packed)
    assert CHAIN["tokenized_splits"].version(plain) == CHAIN["tokenized_splits"].version(packed), "same rows"
    (tmp_path / "films.yaml").write_text(
        yaml.safe_dump(
            {"task": "classification", "base_model": "m", "dataset": {"source": "f.csv"}, "training": {"packing": True}}
        )
    )
    with pytest.raises(RecipeError) as refused:
        load_recipe(tmp_path / "films.yaml")
    said = str(refused.value)
    assert (
        "films.yaml: invalid recipe" in said and "training.packing packs causal-LM SFT rows (task: instruction)" in said
    )


def test_a_packed_training_run_records_what_packing_did(tmp_path, tiny_llama, smollm_tokenizer, monkeypatch):
    """In bf16, as on a CPU with it: the packed rows train through the products' attention
    (``tests/test_attention.py``), the LoRA base's frozen layers held in bf16."""
    from finetune_assets.models import attention
    from finetune_assets.models.precision import CPU_OVERRIDE
    from finetune_assets.training.trainer import train

    monkeypatch.setenv(CPU_OVERRIDE, "1")
    task = get_task(instruction_recipe(tmp_path, tiny_llama, packing=True, epochs=2, save_steps=100))
    rows = [{"prompt": q, "response": a, "system": "", "history": "[]"} for q, a in QUESTIONS * 4]
    splits = DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:6])})
    tokenized = task.tokenize(splits, smollm_tokenizer)
    tokenized.save_to_disk(tmp_path / "splits")
    (tmp_path / "model").mkdir()
    figures = train(task, tmp_path / "splits", tmp_path / "model", logging.getLogger("packing"))
    assert figures["packing"] is True and figures["training_rows"] == 24
    assert figures["packed_rows"] < 24 and figures["examples_per_packed_row"] == round(24 / figures["packed_rows"], 2)
    shared = packing.shared_prompt_length(tokenized["train"], tokenized["validation"])
    assert figures["shared_prompt_tokens"] == shared > 0
    assert 0 < figures["packed_tokens_per_example_token"] < 1, "the shared prompt is computed once per row"
    assert 0 <= figures["padding_share_packed"] < figures["padding_share_unpacked"] < 1, figures
    assert figures["optimizer_steps"] == 2 * -(-figures["packed_rows"] // 4), "batch_size counts packed rows"
    assert (figures["precision"], figures["attention"]) == ("bf16", attention.NAME)
    assert figures["frozen_layers_16bit"] == 2 * 7, "all seven projections of both layers (q, v under LoRA)"
    assert figures["logits_at_targets_only"] is True, "packed rows too: tests/test_answer_logits.py"
    history = json.loads((tmp_path / "model" / "log_history.json").read_text())
    losses = [row["loss"] for row in history if "loss" in row]
    assert losses[-1] < losses[0], losses


def test_packing_without_trl_stops_before_any_data_is_read(tmp_path, tiny_llama, monkeypatch):
    import importlib.util

    from finetune_assets.pipeline.stages import read_raw_rows

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "trl" else real(name, *rest))
    recipe = instruction_recipe(tmp_path, tiny_llama, packing=True)  # its chat.jsonl does not exist
    with pytest.raises(RecipeError, match=r"chat.yaml: training.packing: true packs rows with TRL's pack_dataset"):
        read_raw_rows(recipe, logging.getLogger("test"), tmp_path, [])
