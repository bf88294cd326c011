"""Logits only where a loss is taken (``tasks/causal_lm/answer_logits.py``), on the tiny real Llama
with SmolLM2's chat template: the same loss and gradients as with every logit, the LM head fed the
target positions alone in training and in scoring, the same per-row scores, and every logit for a
model whose own code would not read the mask."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import LlamaForCausalLM

from finetune_assets.tasks.causal_lm import answer_logits, chat, packing, scoring

QUESTIONS = [
    ("Hi", "Hello!"),
    ("What is your favourite colour?", "Blue, like the sky on a clear day."),
    ("Can you count to five?", "One, two, three, four, five."),
    ("Tell me a joke.", "Why did the robot cross the road? It was programmed to."),
]


class RemoteCodeLlama(LlamaForCausalLM):
    """A causal LM whose class lives outside transformers, as ``trust_remote_code`` models do: its
    module does not import ``slice_logits_to_keep``, so nothing says its code reads a mask."""


@pytest.fixture(scope="module")
def rows(smollm_tokenizer):
    encoded = [chat.encode(smollm_tokenizer, chat.conversation(q, a), 96) for q, a in QUESTIONS]
    return Dataset.from_list(encoded).select_columns(["input_ids", "attention_mask", "labels", "length"])


@pytest.fixture(scope="module")
def model(tiny_llama):
    return LlamaForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).train()


@contextlib.contextmanager
def head_positions(model) -> Iterator[list[int]]:
    """A list that gets, for every call of ``model``'s LM head meanwhile, how many positions it projected."""
    projected = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda _, args, __: projected.append(args[0].shape[:-1].numel())
    )
    try:
        yield projected
    finally:
        hook.remove()


def loss_and_gradients(model, batch) -> tuple[float, dict, int]:
    """The loss of ``batch``, the gradients it leaves, and how many positions the LM head projected."""
    with head_positions(model) as projected:
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
    (count,) = projected
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters()}, count


def test_the_loss_and_gradients_are_those_of_every_logit_and_the_head_sees_the_targets_alone(
    rows, model, smollm_tokenizer
):
    features = list(rows.select_columns(["input_ids", "attention_mask", "labels"]))
    plain = scoring.collator(smollm_tokenizer)
    wrapped = answer_logits.for_training(plain, model)
    assert isinstance(wrapped, answer_logits.AnswerLogits), "a transformers Llama reads the mask"
    every_loss, every_grad, every_count = loss_and_gradients(model, plain(features))
    batch = wrapped(features)
    loss, grad, count = loss_and_gradients(model, batch)
    targets = int((batch["labels"][:, 1:] != chat.IGNORE).sum())
    assert every_count == batch["input_ids"].numel() and count == targets < every_count / 2
    assert loss == pytest.approx(every_loss, rel=1e-6)
    for name, value in grad.items():
        torch.testing.assert_close(value, every_grad[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("shared_prompt", [False, True])
def test_packed_rows_keep_their_loss_with_logits_at_the_targets_only(rows, model, smollm_tokenizer, shared_prompt):
    shared = packing.shared_prompt_length(rows) if shared_prompt else 0
    packed_rows = list(packing.pack(rows, 96, shared))
    packed = packing.PackedCollator(smollm_tokenizer.pad_token_id, shared)
    every_loss, _, _ = loss_and_gradients(model, packed(packed_rows))
    batch = answer_logits.AnswerLogits(packed)(packed_rows)
    loss, _, count = loss_and_gradients(model, batch)
    assert count == int((batch["labels"] != chat.IGNORE).sum()), "each example's first label is -100 already"
    assert loss == pytest.approx(every_loss, rel=1e-6)


def scores_and_head_positions(model, rows, collate) -> tuple[np.ndarray, np.ndarray, int]:
    """``response_nll``'s per-row sums and counts, and how many positions the LM head projected."""
    with head_positions(model) as projected:
        sums, counts = scoring.response_nll(model, rows, collate, batch_size=3)
    return sums, counts, sum(projected)


def test_scores_per_row_are_the_same_either_way_and_the_head_sees_the_targets_alone(
    rows, model, smollm_tokenizer, monkeypatch
):
    collate = scoring.collator(smollm_tokenizer)
    sums, counts, projected = scores_and_head_positions(model, rows, collate)
    monkeypatch.setattr(answer_logits, "supported", lambda _: False)
    every_sums, every_counts, every_projected = scores_and_head_positions(model, rows, collate)
    np.testing.assert_array_equal(counts, every_counts)
    np.testing.assert_allclose(sums, every_sums, rtol=1e-5)
    assert (counts == [sum(label != chat.IGNORE for label in labels) for labels in rows["labels"]]).all()
    assert projected == counts.sum() < sum(rows["length"]) <= every_projected


def test_a_model_with_code_of_its_own_gets_every_logit(tiny_llama, smollm_tokenizer):
    outside = RemoteCodeLlama.from_pretrained(tiny_llama, dtype=torch.float32)
    plain = scoring.collator(smollm_tokenizer)
    assert not answer_logits.supported(outside)
    assert answer_logits.for_training(plain, outside) is plain


def test_a_training_run_feeds_the_head_the_answer_tokens_alone(tmp_path, tiny_llama, smollm_tokenizer):
    """Through the Trainer (LoRA, the pipeline's own ``train``): every vocabulary projection in the
    training steps sees as many positions as the batch has targets, not the batch's every token."""
    from test_packing import instruction_recipe

    from finetune_assets.tasks import get_task
    from finetune_assets.training.trainer import train

    task = get_task(instruction_recipe(tmp_path, tiny_llama, epochs=1, save_steps=100))
    rows = [{"prompt": q, "response": a, "system": "", "history": "[]"} for q, a in QUESTIONS * 2]
    splits = DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:4])})
    task.tokenize(splits, smollm_tokenizer).save_to_disk(tmp_path / "splits")
    (tmp_path / "model").mkdir()
    vocabulary, projected = len(smollm_tokenizer), []

    def count(module, args, _):
        if isinstance(module, torch.nn.Linear) and module.out_features == vocabulary and module.training:
            projected.append(args[0].shape)

    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        figures = train(task, tmp_path / "splits", tmp_path / "model", logging.getLogger("answer-logits"))
    finally:
        hook.remove()
    assert figures["logits_at_targets_only"] is True and figures["optimizer_steps"] == 2
    assert len(projected) == 2 and all(len(shape) == 2 for shape in projected), "flattened: (targets, hidden)"
    tokenized = task.tokenize(splits, smollm_tokenizer)["train"]
    targets = sum(sum(label != chat.IGNORE for label in labels) for labels in tokenized["labels"])
    assert sum(shape[0] for shape in projected) == targets
