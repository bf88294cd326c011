"""Instruction tuning: chat formatting, loss masking, EOS, input formats, QLoRA on the CPU (and
where 4-bit weights cannot train), and the export (adapter alone and merged).

The model is a tiny randomly initialised Llama with the real SmolLM2 tokenizer (chat template,
EOS = pad = <|im_end|>), taken from the plain copy that :mod:`finetune_assets.data.formats.gguf` makes of the
packaged GGUF file, so the formatting is the real one and training stays fast. The end-to-end run
is the shipped hub recipe ``medqa_tinyllama_qlora`` with ``datasets.load_dataset`` routed to a
local stand-in, as ``test_hub_recipe.py`` does.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch
import yaml
from tiny_models import SMOLLM_GGUF
from transformers import AutoTokenizer

from finetune_assets.data import sources
from finetune_assets.data.cleaning import clean, comparison_key
from finetune_assets.data.formats import gguf
from finetune_assets.data.formats.chatterbot import read_corpus
from finetune_assets.data.splitting import split_rows
from finetune_assets.recipes import SHIPPED_DIR, load_recipe
from finetune_assets.tasks import REGISTRY, get_task
from finetune_assets.tasks.causal_lm import chat


@pytest.fixture(scope="module")
def tokenizer(smollm_tokenizer):
    return smollm_tokenizer


def write_recipe(folder: Path, name: str, **settings):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"task": "instruction", "base_model": "unused", **settings}))
    return load_recipe(path)


# --- the GGUF base model ----------------------------------------------------------------------


def test_gguf_copy_is_plain_and_made_once(smollm_copy):
    config = json.loads((smollm_copy / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (smollm_copy / "model.safetensors").stat().st_size > 100_000_000  # dequantized weights
    written = (smollm_copy / "model.safetensors").stat().st_mtime_ns
    started = time.monotonic()
    assert gguf.plain_copy(SMOLLM_GGUF, smollm_copy.parent.parent) == smollm_copy
    assert time.monotonic() - started < 5, "the second call reuses the copy"
    assert (smollm_copy / "model.safetensors").stat().st_mtime_ns == written


# --- formatting and loss masking --------------------------------------------------------------


def test_prompt_tokens_carry_no_loss_and_the_response_ends_with_a_learned_eos(tokenizer):
    row = chat.encode(tokenizer, chat.conversation("What is AI?", "Artificial intelligence."), max_length=96)
    asked = tokenizer.apply_chat_template(
        chat.conversation("What is AI?"), add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    n = len(asked)
    assert row["input_ids"][:n] == list(asked), "the prompt is the chat template's, up to the assistant header"
    assert tokenizer.decode(asked).endswith("<|im_start|>assistant\n")
    assert row["labels"][:n] == [chat.IGNORE] * n
    assert row["labels"][n:] == row["input_ids"][n:], "every response token carries loss"
    assert tokenizer.decode(row["labels"][n:-1]) == "Artificial intelligence."
    assert tokenizer.eos_token_id == tokenizer.pad_token_id  # the case that breaks id-based masking
    assert row["labels"][-1] == tokenizer.eos_token_id
    assert row["length"] == len(row["input_ids"]) and row["truncated"] is False


def test_a_system_message_replaces_the_templates_default(tokenizer):
    without = tokenizer.decode(chat.prompt_ids(tokenizer, chat.conversation("Hi")))
    with_system = tokenizer.decode(chat.prompt_ids(tokenizer, chat.conversation("Hi", system="Answer in one word.")))
    assert "You are a helpful AI assistant named SmolLM" in without
    assert "Answer in one word." in with_system and "SmolLM" not in with_system


def test_a_tokenizer_without_chat_template_gets_the_plain_one(smollm_copy):
    plain = AutoTokenizer.from_pretrained(smollm_copy)
    plain.chat_template = None
    row = chat.encode(plain, chat.conversation("Name a colour.", "Blue."), max_length=96)
    n = row["labels"].count(chat.IGNORE)
    assert plain.decode(row["input_ids"][:n]) == "### Question:\nName a colour.\n\n### Answer:\n"
    assert plain.decode(row["input_ids"][n:]) == "Blue.<|im_end|>"


def test_truncation_cuts_the_prompt_first_and_keeps_the_eos(tokenizer):
    row = chat.encode(tokenizer, chat.conversation("tell me " * 200, "Fine."), max_length=64)
    assert row["truncated"] and row["length"] == 64 == len(row["labels"])
    assert tokenizer.decode(row["labels"][-3:]) == "Fine.<|im_end|>"
    assert row["input_ids"][-3:] == row["labels"][-3:]


def test_collator_masks_padding_by_attention_not_by_token_id(tokenizer, tmp_path):
    rows = [
        chat.encode(tokenizer, chat.conversation("Hi", "Hello! How can I help you today?"), 96),
        chat.encode(tokenizer, chat.conversation("Hi", "Hey."), 96),
    ]
    features = [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in rows]
    batch = get_task(write_recipe(tmp_path, "collate", dataset={"source": "x.csv"})).collator(tokenizer, None)(features)
    short = len(rows[1]["input_ids"])
    padded = batch["input_ids"].shape[1] - short
    assert padded > 0 and tokenizer.padding_side == "right"
    assert batch["input_ids"][1, short:].tolist() == [tokenizer.pad_token_id] * padded  # pad id == EOS id
    assert batch["attention_mask"][1, short:].tolist() == [0] * padded
    assert batch["labels"][1, short:].tolist() == [chat.IGNORE] * padded
    assert batch["labels"][1, short - 1].item() == tokenizer.eos_token_id, "the real EOS keeps its label"
    assert batch["labels"][0, -1].item() == tokenizer.eos_token_id


# --- input formats and cleaning ---------------------------------------------------------------


def _clean_rows(recipe):
    """Rows as raw_dataset stores them (through parquet), then cleaned."""
    frame = sources.read_dataset(recipe).frame
    stored = recipe.source_file.parent / "stored.parquet"
    frame.to_parquet(stored, index=False)
    return clean(pd.read_parquet(stored), get_task(recipe))


def test_prompt_completion_records_and_several_answers_to_one_prompt(tmp_path):
    records = [
        {"prompt": "Hi", "completion": " Hello!"},
        {"prompt": "Hi", "completion": "Hey there."},
        {"prompt": "Hi", "completion": "Hello!"},
    ]
    (tmp_path / "pc.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    cleaned = _clean_rows(write_recipe(tmp_path, "pc", dataset={"source": "pc.jsonl"}))
    assert cleaned.rows["response"].tolist() == ["Hello!", "Hey there."]
    assert cleaned.counts()["exact duplicate"] == 1
    assert "conflicting duplicate" not in cleaned.counts(), "different answers to one prompt are fine"


def test_plain_columns_through_the_recipes_mapping(tmp_path):
    pd.DataFrame({"q": ["Why?", "How?"], "a": ["Because.", "Like this."], "persona": ["Be brief.", None]}).to_csv(
        tmp_path / "qa.csv", index=False
    )
    recipe = write_recipe(
        tmp_path, "qa", dataset={"source": "qa.csv", "columns": {"prompt": "q", "response": "a", "system": "persona"}}
    )
    rows = _clean_rows(recipe).rows
    assert rows.to_dict("records") == [
        {"prompt": "Why?", "response": "Because.", "system": "Be brief.", "history": "[]"},
        {"prompt": "How?", "response": "Like this.", "system": "", "history": "[]"},
    ]
    assert get_task(recipe).schema().validate(rows) is not None


def test_chatterbot_corpus_gives_one_row_per_answer(tmp_path):
    (tmp_path / "small.yml").write_text(
        yaml.safe_dump(
            {
                "categories": ["tiny"],
                "conversations": [
                    ["What is Python?", "A language.", "A snake."],
                    ["Hello", "Hi"],
                    "a mis-indented entry",
                ],
            }
        )
    )
    rows = read_corpus(tmp_path)
    assert rows[["prompt", "response"]].values.tolist() == [
        ["What is Python?", "A language."],
        ["What is Python?", "A snake."],
        ["Hello", "Hi"],
        ["a mis-indented entry", ""],
    ]
    assert set(rows["category"]) == {"tiny"}
    corpus = read_corpus(Path(sources.resolve("package:chatterbot_corpus/data/english", Path(".")).location))
    assert len(corpus) > 2000 and corpus["file"].nunique() > 15


def test_answers_to_one_prompt_share_a_split(tmp_path):
    recipe = write_recipe(tmp_path, "groups", dataset={"source": "x.csv"}, splits={"validation": 0.2, "test": 0.2})
    rows = pd.DataFrame(
        {
            "prompt": [f"Question {i // 4}?" for i in range(80)],
            "response": [f"Answer {i}." for i in range(80)],
            "system": "",
        }
    )
    parts = split_rows(rows, recipe, None, get_task(recipe).split_groups(rows))
    seen = {name: set(part["prompt"].map(comparison_key)) for name, part in parts.items()}
    assert not seen["train"] & seen["test"] and not seen["train"] & seen["validation"]
    assert sum(map(len, parts.values())) == 80 and all(len(part) >= 12 for part in parts.values())


# --- the shipped QLoRA recipe on this machine ------------------------------------------------

QUESTIONS = ["What causes {}?", "How is {} treated?", "What are the symptoms of {}?", "Who gets {}?"]
TOPICS = [
    "anemia",
    "asthma",
    "gout",
    "migraine",
    "scurvy",
    "rickets",
    "malaria",
    "tetanus",
    "measles",
    "mumps",
    "rabies",
    "cholera",
    "typhoid",
    "angina",
    "eczema",
    "psoriasis",
    "glaucoma",
    "lupus",
    "sepsis",
    "shingles",
]


def flashcards_stand_in(folder: Path) -> Path:
    folder.mkdir()
    rows = [
        {
            "instruction": "Answer this question truthfully",
            "input": q.format(t),
            "output": f"{t.capitalize()} is {['caused', 'treated', 'noticed', 'seen'][i]} as the textbook says.",
        }
        for t in TOPICS
        for i, q in enumerate(QUESTIONS)
    ]
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    return folder


def medqa_run(root: Path, base: Path, materialize_recipes, **overrides):
    """Materialize the shipped medqa recipe (tiny base, local data in place of the hub's)."""
    shipped = yaml.safe_load((SHIPPED_DIR / "medqa_tinyllama_qlora.yaml").read_text())
    recipe = {
        **shipped,
        "base_model": str(base),
        **overrides,
        "splits": {"validation": 0.15, "test": 0.15, "seed": 1},
        "training": {
            **shipped["training"],
            "epochs": 3,
            "learning_rate": 5e-3,
            "max_train_samples": 48,
            "max_length": 64,
            "gradient_accumulation_steps": 2,
            "logging_steps": 2,
        },
        "generation": {"max_new_tokens": 8},
        "evaluation": {"num_examples": 3},
    }
    (root / "recipes").mkdir(parents=True)
    (root / "recipes" / "medqa_tinyllama_qlora.yaml").write_text(yaml.safe_dump(recipe))
    data = flashcards_stand_in(root / "flashcards")
    return materialize_recipes(root, {"train": data / "train.parquet"})


@pytest.fixture
def no_four_bit(monkeypatch):
    """bitsandbytes absent from this process, as on a machine without it: 4-bit weights cannot train."""
    from finetune_assets.models import quantization

    quantization._probe.cache_clear()
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    yield
    quantization._probe.cache_clear()


def test_qlora_where_4_bit_cannot_train_fails_before_any_data_is_read_or_falls_back(tmp_path, tiny_llama, no_four_bit):
    from finetune_assets.errors import MethodError
    from finetune_assets.models import methods
    from finetune_assets.pipeline.stages import read_raw_rows

    settings = {"base_model": str(tiny_llama), "method": "qlora", "dataset": {"source": "not_there.jsonl"}}
    recipe = write_recipe(tmp_path, "medqa", **settings)
    with pytest.raises(MethodError) as refused:
        read_raw_rows(recipe, logging.getLogger("test"), tmp_path, [])  # the data file does not exist
    said = str(refused.value)
    assert said.startswith("medqa.yaml: method qlora needs bitsandbytes 4-bit weights on the training device")
    assert "bitsandbytes cannot be imported" in said and "quantization.cpu_fallback: true" in said
    fallback = write_recipe(tmp_path, "medqa", **settings, quantization={"cpu_fallback": True})
    assert methods.trained_method(fallback) == "lora"


def test_qlora_trains_on_a_4_bit_base_wherever_bitsandbytes_can(make_recipe, monkeypatch):
    from finetune_assets.models import methods, quantization

    recipe = make_recipe("q", method="qlora", quantization={"cpu_fallback": True})
    support = quantization.four_bit_support(recipe)
    assert support.runs and support.device == ("cuda" if torch.cuda.is_available() else "cpu"), support
    assert methods.trained_method(recipe) == "qlora", "no fallback where 4-bit weights train"
    if not torch.cuda.is_available():  # compute_dtype auto follows the CPU's bf16 support
        for bf16, dtype in (("1", "bfloat16"), ("0", "float32")):
            monkeypatch.setenv("FINETUNE_CPU_BF16", bf16)
            assert quantization.compute_dtype(recipe) == dtype
    fixed = make_recipe("f", method="qlora", quantization={"compute_dtype": "bfloat16"})
    assert quantization.compute_dtype(fixed) == "bfloat16"


def test_4_bit_layers_keep_their_training_layout_through_an_evaluation_step():
    """A 4-bit layer narrower than a quantization block (64) run in eval mode without gradients, as
    the Trainer's evaluation during training runs it, then trained again: bitsandbytes would repack
    it for its AVX-512 BF16 inference kernel, and fail, on a CPU that has one."""
    import bitsandbytes as bnb

    from finetune_assets.models import quantization

    torch.manual_seed(0)
    model = torch.nn.Sequential(bnb.nn.Linear4bit(32, 16, compute_dtype=torch.float32, quant_type="nf4"))
    model[0].weight = bnb.nn.Params4bit(torch.randn(16, 32), requires_grad=False, quant_type="nf4").to("cpu")
    quantization.keep_training_layout(model)
    assert model[0].support_avx512bf16_for_cpu is False
    with torch.no_grad():
        evaluated = model.eval()(torch.randn(3, 32))
    assert not getattr(model[0].weight.quant_state, "packing_format_for_cpu", False)
    inputs = torch.randn(3, 32, requires_grad=True)
    model.train()(inputs).sum().backward()
    assert evaluated.shape == (3, 16) and inputs.grad is not None and torch.isfinite(inputs.grad).all()


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, tiny_llama, materialize_recipes):
    """The shipped QLoRA recipe as it is (no fallback), on this machine's device: the CPU here."""
    run = medqa_run(tmp_path_factory.mktemp("medqa"), tiny_llama, materialize_recipes)
    assert run.result.success, run.logs[-5:]
    return run.metadata, run.hub_calls, run.logs


def test_qlora_trains_the_4_bit_base_on_this_device_and_records_it(qlora_run, tiny_llama):
    metadata, asked, logs = qlora_run
    assert asked == [("medalpaca/medical_meadow_medical_flashcards", "train")]
    model = metadata["finetuned_model"]
    assert model["method_trained"].value == "qlora" and model["qlora_cpu_fallback"].value is False
    device = "cpu" if not torch.cuda.is_available() else model["device"].value
    assert model["four_bit_device"].value == device
    assert model["four_bit_compute_dtype"].value == {"bf16": "bfloat16"}.get(model["precision"].value, "float32")
    assert model["optimizer"].value == "adamw_torch_fused", "the fused AdamW updates the adapter on the 4-bit base"
    layers = json.loads((tiny_llama / "config.json").read_text())["num_hidden_layers"]
    assert model["four_bit_layers"].value == 7 * layers, "q, k, v, o, gate, up and down of every layer in 4 bits"
    assert any(f"method qlora trains on a 4-bit base on {device.split()[0]}" in line for line in logs)
    assert set(model["lora_target_modules"].value.split(", ")) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    trainable, total = model["trainable_parameters"].value, model["total_parameters"].value
    assert 0 < trainable < total
    assert model["trainable_fraction"].value == pytest.approx(trainable / total, rel=5e-4)  # 4 significant digits
    card = (Path(metadata["exported_model"]["path"].value) / "README.md").read_text()
    assert (
        "method: `qlora`" in card
        and f"base loaded in 4 bits for training on {device} ({7 * layers} bitsandbytes" in card
    )
    assert f"trainable parameters: {trainable:,} of {total:,}" in card


def test_tokenized_rows_put_loss_on_the_answer_only(qlora_run, tokenizer):
    metadata, _, _ = qlora_run
    train = datasets.load_from_disk(metadata["tokenized_splits"]["path"].value)["train"]
    for row in train.select(range(5)):
        answer = [label for label in row["labels"] if label != chat.IGNORE]
        assert tokenizer.decode(answer) == row["response"] + tokenizer.eos_token
        assert "Answer this question truthfully" in tokenizer.decode(row["input_ids"])  # the system column


def test_perplexity_of_base_and_tuned_on_the_answers(qlora_run):
    metadata, _, _ = qlora_run
    report = metadata["evaluation_report"]
    tuned, base = report["perplexity"].value, report["baseline_perplexity"].value
    # The metadata shows 4 significant digits; report.json keeps every digit.
    figures = json.loads(Path(report["path"].value).read_text())
    for model in ("tuned", "baseline"):
        assert figures[model]["metrics"]["perplexity"] == pytest.approx(
            math.exp(figures[model]["metrics"]["test_loss"])
        )
    assert tuned == pytest.approx(figures["tuned"]["metrics"]["perplexity"], rel=5e-4)
    assert base == pytest.approx(figures["baseline"]["metrics"]["perplexity"], rel=5e-4)
    assert 1 < tuned < base, "training lowered the perplexity of held-out answers"
    assert 0 <= report["eos_stop_rate"].value <= 1
    table = report["side_by_side"].value
    assert "| prompt | reference | base model | fine-tuned |" in table and table.count("\n") == 4
    assert not REGISTRY["instruction"].primary_metric_higher_is_better


def test_export_has_the_adapter_alone_and_a_merged_model_that_agree(qlora_run, tokenizer):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, pipeline

    metadata, _, _ = qlora_run
    export = Path(metadata["exported_model"]["path"].value)
    adapter = export / "adapter"
    assert (adapter / "adapter_model.safetensors").exists() and not (adapter / "model.safetensors").exists()
    assert (export / "model.safetensors").exists() and not (export / "adapter_config.json").exists()
    assert (adapter / "adapter_model.safetensors").stat().st_size < (export / "model.safetensors").stat().st_size
    generation = json.loads((export / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tokenizer.eos_token_id and generation["max_new_tokens"] == 8
    assert generation["do_sample"] is False
    inputs = torch.tensor([chat.prompt_ids(tokenizer, chat.conversation("What causes gout?"))])
    with torch.no_grad():
        from_adapter = AutoPeftModelForCausalLM.from_pretrained(adapter)(input_ids=inputs).logits
        merged = AutoModelForCausalLM.from_pretrained(export)(input_ids=inputs).logits
    assert torch.allclose(from_adapter, merged, atol=1e-4), "merged weights = base + adapter"
    reply = pipeline("text-generation", model=str(export), device="cpu")(chat.conversation("What causes gout?"))
    assert reply[0]["generated_text"][-1]["role"] == "assistant"
    assert isinstance(metadata["exported_model"]["pipeline_probe"].value["probe_output"], str)
