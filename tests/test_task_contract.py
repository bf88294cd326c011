"""Every registered task family honours the same interface, checked the same way on a tiny real
model: rows in, clean rows that satisfy its schema, tokenized splits, padded batches, an
evaluation with its primary metric, report material, and an export its own pipeline loads.

A family added to the registry without an entry in :data:`CASES` fails here, so a new plug-in
cannot skip the contract."""

from __future__ import annotations

import math
import typing
from pathlib import Path

import pandas as pd
import pytest
import yaml
from datasets import Dataset, DatasetDict
from peft import TaskType
from tiny_models import DIALOGUES

from finetune_assets.data.cleaning import clean
from finetune_assets.data.validation import schema_failures
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.recipes import Recipe, load_recipe
from finetune_assets.report.values import KINDS
from finetune_assets.tasks import REGISTRY, get_task
from finetune_assets.tasks.base import Evaluation

SENTIMENT = [
    ("what a lovely film", "positive"),
    ("a dull and tired plot", "negative"),
    ("great acting all round", "positive"),
    ("i want my money back", "negative"),
]
QUESTIONS = [
    ("What is your name?", "I am a bot."),
    ("How are you?", "Fine, thank you."),
    ("Where do you live?", "In a computer."),
    ("Do you sleep?", "Never."),
]

# task: reward needs its reward functions: two of the shipped ones, sampling short completions
REWARD = {
    "functions": [{"function": "exact_answer"}, {"function": "length_band", "options": {"max_chars": 20}}],
    "generations": 2,
    "max_completion_length": 4,
}

CASES = {
    "classification": {
        "model": "tiny_bert",
        "rows": [{"text": t, "label": y} for t, y in SENTIMENT],
        "recipe": {"dataset": {"labels": ["negative", "positive"]}},
    },
    "summarization": {
        "model": "tiny_t5",
        "rows": [{"document": d, "summary": s} for d, s in DIALOGUES],
        "recipe": {
            "training": {"max_length": 48, "max_target_length": 16, "input_prefix": "summarize: "},
            "generation": {"max_new_tokens": 6},
        },
    },
    "summarization-decoder-only": {
        "task": "summarization",
        "model": "tiny_llama",
        "rows": [{"document": d, "summary": s} for d, s in DIALOGUES],
        "recipe": {
            "training": {"max_length": 48, "max_target_length": 16, "input_prefix": "Summarize: "},
            "generation": {"max_new_tokens": 6},
        },
    },
    "instruction": {
        "model": "tiny_llama",
        "rows": [{"prompt": p, "response": r} for p, r in QUESTIONS],
        "recipe": {"training": {"max_length": 64}, "generation": {"max_new_tokens": 6}},
    },
    "preference": {
        "model": "tiny_llama",
        "rows": [{"prompt": p, "chosen": r, "rejected": "I would rather not say."} for p, r in QUESTIONS],
        "recipe": {"training": {"max_length": 64}, "generation": {"max_new_tokens": 6}},
    },
    "reward": {
        "model": "tiny_llama",
        "rows": [{"prompt": p, "answer": str(n)} for n, (p, _) in enumerate(QUESTIONS)],
        "recipe": {
            "reward": REWARD,
            "training": {"max_length": 64},
            "generation": {"max_new_tokens": 6},
        },
    },
}


def family(case: str) -> str:
    return CASES[case].get("task", case)


def test_every_registered_family_has_a_contract_case_and_recipes_offer_exactly_those():
    assert set(map(family, CASES)) == set(REGISTRY)
    assert set(typing.get_args(Recipe.model_fields["task"].annotation)) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_family_is_bound_to_its_recipe_and_no_method_takes_it_again(name, tiny_bert, tmp_path):
    import inspect

    from finetune_assets.models import precision

    family_class = REGISTRY[name]
    takes_recipe = [
        method
        for method, member in inspect.getmembers(family_class, inspect.isfunction)
        if method != "__init__" and "recipe" in inspect.signature(member).parameters
    ]
    assert takes_recipe == [], f"{name}: {takes_recipe} take the recipe, which the bound object already holds"
    (tmp_path / "bound.yaml").write_text(
        yaml.safe_dump(
            {
                "task": name,
                "base_model": "base",
                "dataset": {"source": "rows.jsonl", "labels": ["a", "b"]},
                **({"reward": REWARD} if name == "reward" else {}),
            }
        )
    )
    (tmp_path / "base").mkdir()
    recipe = load_recipe(tmp_path / "bound.yaml")
    task = get_task(recipe)
    assert type(task) is family_class and task.recipe is recipe
    assert task.base_location == str(tmp_path / "base"), "a relative base model resolves beside the recipe"
    assert task.precision == precision.resolve(recipe)


def recipe_for(case: str, model: Path, folder: Path) -> Recipe:
    extra = CASES[case]["recipe"]
    settings = {
        "task": family(case),
        "base_model": str(model),
        "evaluation": {"num_examples": 2},
        **extra,
        "dataset": {"source": "rows.jsonl", **extra.get("dataset", {})},
    }
    (folder / "contract.yaml").write_text(yaml.safe_dump(settings))
    return load_recipe(folder / "contract.yaml")


def is_metadata_value(value) -> bool:
    return isinstance(value, (str, int, float, bool)) or type(value) in KINDS.values()


@pytest.mark.parametrize("case", sorted(CASES))
def test_family_honours_the_interface(case, request, tmp_path):
    import torch

    model_dir = request.getfixturevalue(CASES[case]["model"])
    recipe = recipe_for(case, model_dir, tmp_path)
    task = get_task(recipe)

    # constants the pipeline reads without running anything
    assert task.name == family(case)
    assert set(task.text_columns) <= set(task.required_columns)
    assert isinstance(task.primary_metric, str) and isinstance(task.primary_metric_higher_is_better, bool)
    labels = task.label_names()
    assert labels is None or ("label" in task.required_columns and all(isinstance(x, str) for x in labels))

    # rows in: cleaned rows in the task's columns satisfy its schema
    raw = pd.DataFrame(CASES[case]["rows"])
    cleaned = clean(raw, get_task(recipe))
    assert set(task.required_columns) <= set(cleaned.rows.columns)
    assert len(cleaned.rows) == len(raw)
    assert schema_failures(task.schema(), cleaned.rows).empty

    # tokenized splits keep the canonical columns and add inputs, lengths and truncation flags
    tokenizer = load_tokenizer(str(model_dir), recipe)
    rows = Dataset.from_pandas(cleaned.rows, preserve_index=False)
    splits = task.tokenize(DatasetDict({"train": rows, "test": rows}), tokenizer)
    test = splits["test"]
    for column in (*task.required_columns, "input_ids", "length", "truncated"):
        assert column in test.column_names, column
    assert test["length"] == [len(ids) for ids in test["input_ids"]]

    # the collator pads rows of different lengths into one batch
    model = task.load_model(str(model_dir))
    assert task.peft_task_type(model) in TaskType.__members__
    inputs = [c for c in ("input_ids", "attention_mask", "labels", "label") if c in test.column_names]
    batch = task.collator(tokenizer, model)([test.select_columns(inputs)[i] for i in range(len(test))])
    assert isinstance(batch["input_ids"], torch.Tensor) and batch["input_ids"].shape[0] == len(test)

    # evaluation: the primary metric, finite, and a few samples
    evaluation = task.evaluate(model, tokenizer, test, tmp_path / "scratch")
    assert isinstance(evaluation, Evaluation)
    assert math.isfinite(evaluation.metrics[task.primary_metric])
    assert 0 < len(evaluation.samples) <= len(test)

    # report material: PNG plots and metadata values the UI can show
    plots = task.report_plots(evaluation, evaluation, tmp_path)
    assert plots and all(path.read_bytes()[:4] == b"\x89PNG" for path in plots.values())
    assert all(is_metadata_value(value) for value in task.report_metadata(evaluation, evaluation).values())

    # the export: prepared, saved, and loaded through the family's own pipeline
    export = tmp_path / "export"
    export.mkdir()
    task.prepare_export(model, tokenizer, export)
    model.save_pretrained(export)
    tokenizer.save_pretrained(export)
    probe = task.load_pipeline(export)(CASES[case]["rows"][0][task.text_columns[0]])
    assert probe is not None and probe != ""

    # export_reloads: the rows a user would ask the export's pipeline, answered as the evaluation said
    cases = task.reload_cases(test, evaluation.__dict__, 2)
    assert len(cases) == 2
    pipeline = task.load_pipeline(export)
    words = [task.answer(pipeline, asked).split() for asked, _ in cases]
    assert words == [expected.split() for _, expected in cases]
