"""Whole conversations in instruction tuning: the loss mask read off the chat template (SmolLM2's
real tokenizer, and TinyLlama's and Llama-2's templates on a tiny Llama-style tokenizer), whole
exchanges dropped when too long, the OpenAI, ShareGPT and Alpaca record formats, cleaning of every
turn, and splits that keep a conversation's input out of training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import tiny_models
import yaml
from datasets import Dataset, DatasetDict

from finetune_assets.checks.data import no_train_test_leakage
from finetune_assets.data import sources
from finetune_assets.data.cleaning import clean
from finetune_assets.data.splitting import split_rows
from finetune_assets.errors import TemplateError
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.recipes import load_recipe
from finetune_assets.tasks import get_task
from finetune_assets.tasks.causal_lm import chat

HISTORY = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def labelled(tokenizer, row) -> list[str]:
    return tokenizer.convert_ids_to_tokens([i for i, label in zip(row["input_ids"], row["labels"]) if label != -100])


# --- the loss mask, derived from the template -------------------------------------------------


def test_smollm2_every_assistant_turn_and_its_eos_carry_loss_nothing_else(smollm_tokenizer):
    turns = chat.conversation("How?", "Fine.", system="Be kind.", history=HISTORY)
    row = chat.encode(smollm_tokenizer, turns, max_length=None)
    assert labelled(smollm_tokenizer, row) == ["Hello", "!", "<|im_end|>", "Fine", ".", "<|im_end|>"]
    assert smollm_tokenizer.decode(row["input_ids"]) == (
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        "Hello!<|im_end|>\n<|im_start|>user\nHow?<|im_end|>\n<|im_start|>assistant\nFine.<|im_end|>"
    )
    # every labelled position holds its own token: the model learns to write exactly these
    assert all(label in (-100, token) for token, label in zip(row["input_ids"], row["labels"]))
    assert row["truncated"] is False and row["turns_dropped"] == 0 and row["length"] == len(row["input_ids"])


@pytest.mark.parametrize(
    "template, answers",
    [
        (tiny_models.ZEPHYR_TEMPLATE, [*"Hello!", "</s>", *"Fine.", "</s>"]),
        (tiny_models.LLAMA2_TEMPLATE, ["▁", *"Hello!", "▁", "</s>", "▁", *"Fine.", "▁", "</s>"]),
    ],
    ids=["tinyllama-zephyr", "llama-2"],
)
def test_llama_style_templates_mask_exactly_the_assistant_tokens(template, answers):
    tokenizer = tiny_models.tiny_llama_tokenizer(template)
    turns = chat.conversation("How?", "Fine.", system="Be kind.", history=HISTORY)
    row = chat.encode(tokenizer, turns, max_length=None)
    assert labelled(tokenizer, row) == answers
    rendered = tokenizer.decode(row["input_ids"])
    assert "Be kind." in rendered, "the system message is kept"
    assert rendered == tokenizer.apply_chat_template(turns, tokenize=False).rstrip("\n")
    # generation starts where the last answer did in training, from the very same tokens
    asked = chat.prompt_ids(tokenizer, turns[:-1])
    assert chat.prompt_before_last_answer(row["input_ids"], row["labels"]) == asked


def test_a_template_that_rewrites_earlier_turns_is_refused_by_name():
    tokenizer = tiny_models.tiny_llama_tokenizer(
        "{{ messages | length }} turns\n" + tiny_models.ZEPHYR_TEMPLATE
    )  # the header changes with every turn
    with pytest.raises(TemplateError, match="is not prefix-stable") as error:
        chat.encode(tokenizer, chat.conversation("How?", "Fine.", history=HISTORY), max_length=None)
    assert "the chat template of the tokenizer at" in str(error.value)


def test_a_template_without_eos_after_answers_is_refused():
    template = tiny_models.ZEPHYR_TEMPLATE.replace(
        "message['content'] + eos_token }}\n{% endif %}", "message['content'] }}\n{% endif %}"
    )
    assert template != tiny_models.ZEPHYR_TEMPLATE
    tokenizer = tiny_models.tiny_llama_tokenizer(template)
    with pytest.raises(TemplateError, match="does not end an assistant turn with the EOS token '</s>'"):
        chat.encode(tokenizer, chat.conversation("Hi", "Hello!"), max_length=None)


def test_a_long_conversation_loses_whole_exchanges_oldest_first_and_keeps_its_system(smollm_tokenizer):
    history = HISTORY + [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    turns = chat.conversation("How?", "Fine.", system="Be kind.", history=history)
    whole = chat.encode(smollm_tokenizer, turns, max_length=None)
    row = chat.encode(smollm_tokenizer, turns, max_length=whole["length"] - 5)
    assert row["turns_dropped"] == 1 and row["truncated"] is True
    text = smollm_tokenizer.decode(row["input_ids"])
    assert text.startswith("<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nName a colour.")
    assert "Hello!" not in text
    assert labelled(smollm_tokenizer, row) == ["Blue", ".", "<|im_end|>", "Fine", ".", "<|im_end|>"]


# --- record formats, cleaning, splits ---------------------------------------------------------


def write_recipe(folder: Path, records: list[dict], **settings):
    (folder / "chats.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    path = folder / "chats.yaml"
    path.write_text(
        yaml.safe_dump(
            {"task": "instruction", "base_model": "unused", "dataset": {"source": "chats.jsonl"}, **settings}
        )
    )
    return load_recipe(path)


def clean_records(folder: Path, records: list[dict], **settings):
    """Rows as raw_dataset stores them (through parquet), then cleaned."""
    recipe = write_recipe(folder, records, **settings)
    stored = folder / "raw.parquet"
    sources.read_dataset(recipe).frame.to_parquet(stored, index=False)
    return pd.read_parquet(stored), clean(pd.read_parquet(stored), get_task(recipe))


def test_openai_messages_become_whole_conversations(tmp_path):
    records = [
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "and 3+3?"},
                {"role": "assistant", "content": "6"},
                {"role": "user", "content": "thanks"},
            ]
        },  # a last question nobody answered
        {"messages": [{"role": "user", "content": "anyone there?"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]},
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
            ]
        },
    ]
    raw, cleaned = clean_records(tmp_path, records)
    assert list(raw.columns) == ["messages"], "raw_dataset keeps the records as they are"
    assert cleaned.rows.to_dict("records") == [
        {"prompt": "Hi", "response": "Hello!", "system": "Be kind.", "history": "[]"},
        {
            "prompt": "and 3+3?",
            "response": "6",
            "system": "",
            "history": json.dumps([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]),
        },
    ]
    problems = cleaned.dropped["unusable conversation"]["problem"].tolist()
    assert problems == [
        "no assistant turn",
        "turn 2 has role 'tool'; known roles are assistant, gpt, human, system, user (in 'role')",
        "turns do not alternate user and assistant (turn 2 is user)",
    ]
    assert get_task(write_recipe(tmp_path, records)).schema().validate(cleaned.rows) is not None


def test_sharegpt_and_alpaca_records(tmp_path):
    sharegpt = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello!"},
                {"from": "human", "value": "Bye"},
                {"from": "gpt", "value": "Bye!"},
            ]
        }
    ]
    (tmp_path / "sharegpt").mkdir()
    rows = clean_records(tmp_path / "sharegpt", sharegpt)[1].rows.to_dict("records")
    assert rows == [
        {
            "prompt": "Bye",
            "response": "Bye!",
            "system": "Be brief.",
            "history": json.dumps(HISTORY[:1] + [{"role": "assistant", "content": "Hello!"}]),
        }
    ]
    alpaca = [
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Name a prime.", "input": "", "output": "7"},
    ]
    (tmp_path / "alpaca").mkdir()
    rows = clean_records(tmp_path / "alpaca", alpaca)[1].rows
    assert rows[["prompt", "response", "history"]].values.tolist() == [
        ["Translate to French. cat", "chat", "[]"],
        ["Name a prime.", "7", "[]"],
    ]  # whitespace normalised


def test_cleaning_reaches_every_turn(tmp_path):
    def chat_record(first: str, answer: str = "Hello!") -> dict:
        return {
            "messages": [
                {"role": "user", "content": first},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "More?"},
                {"role": "assistant", "content": "Yes."},
            ]
        }

    records = [
        chat_record("<b>Hi</b>   there"),
        chat_record("HI, there!"),  # near duplicate of the first
        chat_record("Hi there", answer="   "),  # an empty earlier answer
        chat_record("Hello", answer="x" * 50),  # an earlier answer over max_chars
        chat_record("Something else"),
    ]  # same last exchange, different conversation: kept
    _, cleaned = clean_records(tmp_path, records, cleaning={"max_chars": 40})
    histories = [json.loads(h) for h in cleaned.rows["history"]]
    assert [h[0]["content"] for h in histories] == ["Hi there", "Something else"]
    assert cleaned.counts() == {
        "unusable conversation": 0,
        "empty text": 1,
        "shorter than min_chars": 0,
        "longer than max_chars": 1,
        "exact duplicate": 0,
        "near duplicate": 1,
    }


def test_a_conversations_input_is_all_its_user_turns_for_splits_and_leakage(tmp_path):
    recipe = write_recipe(tmp_path, [], splits={"validation": 0.2, "test": 0.2})
    rows = pd.DataFrame(
        [
            {
                "prompt": "And now?",
                "response": f"Answer {i}.",
                "system": "",
                "history": json.dumps(
                    [{"role": "user", "content": f"Topic {i // 3}"}, {"role": "assistant", "content": "Sure."}]
                ),
            }
            for i in range(60)
        ]
    )
    task = get_task(recipe)
    keys = task.input_keys(rows)
    assert keys[0] == "topic 0 and now" and keys[0] == keys[2] != keys[3]
    parts = split_rows(rows, recipe, None, task.split_groups(rows))
    seen = {name: set(task.input_keys(part)) for name, part in parts.items()}
    assert not seen["train"] & (seen["validation"] | seen["test"]), "the same conversation input never spans splits"
    # the leakage check compares the same keys: one shared opening turn does not make two inputs equal
    folder = tmp_path / "splits"
    DatasetDict({name: Dataset.from_pandas(part, preserve_index=False) for name, part in parts.items()}).save_to_disk(
        folder
    )
    assert no_train_test_leakage(recipe, ArtifactRef(str(folder), "fp")).passed
    parts["test"].loc[0, "history"] = parts["train"]["history"].iloc[0]
    DatasetDict({name: Dataset.from_pandas(part, preserve_index=False) for name, part in parts.items()}).save_to_disk(
        tmp_path / "leaky"
    )
    finding = no_train_test_leakage(recipe, ArtifactRef(str(tmp_path / "leaky"), "fp"))
    assert not finding.passed and finding.figures["leaked_rows"] == 1


def test_the_task_tokenizes_a_conversation_with_loss_on_every_answer(smollm_tokenizer, tmp_path):
    recipe = write_recipe(tmp_path, [], training={"max_length": 200})
    row = {"prompt": "How?", "response": "Fine.", "system": "", "history": json.dumps(HISTORY)}
    encoded = get_task(recipe).tokenize(DatasetDict({"train": Dataset.from_list([row])}), smollm_tokenizer)["train"][0]
    assert labelled(smollm_tokenizer, encoded) == ["Hello", "!", "<|im_end|>", "Fine", ".", "<|im_end|>"]
    assert "You are a helpful AI assistant named SmolLM" in smollm_tokenizer.decode(encoded["input_ids"])
