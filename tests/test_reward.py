"""Reward-driven tuning (GRPO through TRL) on tiny real models: the shipped reward functions on
hand-written completions, a user's function loaded by module:function, a raising function stopping
training with its name, a reward function's source in finetuned_model's fingerprint, the rows'
cleaning, and a GRPO recipe trained end to end through Dagster with its reward figures logged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import NO_QUALITY_GATES

from finetune_assets.data.cleaning import clean
from finetune_assets.errors import BAD_INPUT, DataError, RecipeError, RewardError
from finetune_assets.pipeline.chain import CHAIN
from finetune_assets.pipeline.stage_names import FINETUNED_MODEL, TOKENIZED_SPLITS
from finetune_assets.recipes import load_recipe, load_recipes
from finetune_assets.tasks import get_task
from finetune_assets.tasks.reward import rewards

ANSWER = {"function": "exact_answer", "options": {"field": "answer", "kind": "number"}}
SCHEMA = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}


def reward_recipe(folder: Path, functions: list[dict], base: str = "base", **settings):
    recipe = {
        "task": "reward",
        "base_model": base,
        "dataset": {"source": "prompts.jsonl"},
        "reward": {"functions": functions, **settings.pop("reward", {})},
        **settings,
    }
    (folder / "sums.yaml").write_text(yaml.safe_dump(recipe))
    if base == "base":
        (folder / "base").mkdir(exist_ok=True)
    return load_recipe(folder / "sums.yaml")


def scores(tmp_path, spec: dict, completions: list[str], row: dict) -> list[float]:
    (function,) = rewards.load(reward_recipe(tmp_path, [spec]))
    return function.scores(completions, [row] * len(completions))


CASES = {
    "exact number": (
        ANSWER,
        {"answer": "1250"},
        ["So she has 1,250 apples.", "5 + 7 = 12, so 1250", "It is 1249.", "I do not know."],
        [1, 1, 0, 0],
    ),
    "exact text": (
        {"function": "exact_answer", "options": {"kind": "text"}},
        {"answer": "Paris"},
        ["Let me think.\nThe answer is: paris!", "Paris", "The answer is Lyon.", "Paris is big.\nRome"],
        [1, 1, 0, 0],
    ),
    "exact, extracted by a pattern": (
        {"function": "exact_answer", "options": {"pattern": "<answer>(.*?)</answer>"}},
        {"answer": "7"},
        ["3 + 4 <answer>7</answer>", "<answer>8</answer> no, 7", "7"],
        [1, 0, 0],
    ),
    "regex format": (
        {"function": "regex", "options": {"pattern": r"^<think>.*</think>\s*\d+$"}},
        {},
        ["<think>3+4</think> 7", "<think>\nhm\n</think>\n7", "7", "<think>x</think> seven"],
        [1, 1, 0, 0],
    ),
    "length band": (
        {"function": "length_band", "options": {"min_chars": 3, "max_chars": 10}},
        {},
        ["abc", "  ten chars!  ", "ab", "eleven char"],  # stripped: 3, 10, 2 and 11 characters
        [1, 1, 0, 0],
    ),
    "json schema": (
        {"function": "json_schema", "options": {"schema": SCHEMA}},
        {},
        ['{"city": "Oslo"}', '```json\n{"city": "Oslo", "x": 1}\n```', '{"city": 3}', "{city: Oslo}", '["Oslo"]'],
        [1, 1, 0, 0, 0],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_shipped_reward_function_scores_hand_written_completions(case, tmp_path):
    spec, row, completions, expected = CASES[case]
    assert scores(tmp_path, spec, completions, {"prompt": "?", **row}) == expected


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"function": "regex", "options": {"pattern": "(unclosed"}}, "do not suit regex"),
        ({"function": "json_schema", "options": {"schema": {"type": "no such type"}}}, "do not suit json_schema"),
        ({"function": "exact_answer", "options": {"kind": "number", "colour": "red"}}, "colour"),
        ({"function": "exact_mach"}, "neither a shipped reward function"),
        ({"function": "no_such_module_here:score"}, "cannot import 'no_such_module_here'"),
    ],
)
def test_a_reward_function_that_cannot_be_built_is_named_by_recipe_and_key(spec, said, tmp_path):
    with pytest.raises(RecipeError, match=said) as error:
        rewards.load(reward_recipe(tmp_path, [ANSWER, {**spec, "name": "second"}]))
    assert "sums.yaml: reward.functions[1]" in str(error.value)


def write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(body)


def test_a_users_function_is_loaded_by_module_function_from_the_recipes_folder_and_called_as_trl_calls_it(
    tmp_path,
):
    write_module(
        tmp_path,
        "shouting_rewards",
        "def shouting(completion, row, bonus=0.0):\n    return completion.isupper() + bonus + len(row['answer'])\n",
    )
    recipe = reward_recipe(
        tmp_path,
        [ANSWER, {"function": "shouting_rewards:shouting", "name": "loud", "weight": 0.5, "options": {"bonus": 1}}],
    )
    exact, loud = rewards.load(recipe)
    assert (loud.__name__, loud.weight, exact.__name__) == ("loud", 0.5, "exact_answer")
    # TRL's call: conversational prompts and completions, the data's columns, and its own extras
    prompts = [[{"role": "user", "content": "What is 2 plus 2?"}]] * 2
    completions = [[{"role": "assistant", "content": "IT IS 4"}], [{"role": "assistant", "content": "it is 5"}]]
    extras = {"completion_ids": [[1], [2]], "trainer_state": None, "log_metric": print, "log_extra": print}
    assert loud(prompts, completions, answer=["4", "4"], **extras) == [3.0, 2.0]
    assert exact(prompts, completions, answer=["4", "4"], **extras) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("def judge(completion, row):\n    return 1 / 0\n", "raised ZeroDivisionError: division by zero"),
        ("def judge(completion, row):\n    return 'good'\n", "returned 'good', not a finite number"),
        ("def judge(completion, row):\n    return None\n", "returned None, not a finite number"),
        ("def judge(completion, row):\n    return float('nan')\n", "returned nan, not a finite number"),
    ],
)
def test_a_reward_function_that_raises_or_returns_no_number_is_named_with_the_completion(body, said, tmp_path):
    module = f"judge_{abs(hash(body))}"
    write_module(tmp_path, module, body)
    (judge,) = rewards.load(reward_recipe(tmp_path, [{"function": f"{module}:judge"}]))
    with pytest.raises(RewardError, match=said) as error:
        judge([[{"role": "user", "content": "Add 2 and 2."}]], [[{"role": "assistant", "content": "four-ish"}]])
    assert "sums.yaml: reward function 'judge'" in str(error.value)
    assert "'four-ish'" in str(error.value) and "'Add 2 and 2.'" in str(error.value)
    assert isinstance(error.value, BAD_INPUT), "bad input: Dagster does not retry it"


def test_editing_a_reward_functions_source_makes_finetuned_model_stale_and_only_it(tmp_path):
    write_module(tmp_path, "stale_rewards", "def short(completion, row):\n    return float(len(completion) < 20)\n")
    recipe = reward_recipe(tmp_path, [ANSWER, {"function": "stale_rewards:short"}])
    stages = {name: CHAIN[name] for name in (TOKENIZED_SPLITS, FINETUNED_MODEL)}
    before = {name: stage.version(recipe) for name, stage in stages.items()}
    write_module(tmp_path, "stale_rewards", "def short(completion, row):\n    return float(len(completion) < 30)\n")
    after = {name: stage.version(recipe) for name, stage in stages.items()}
    assert after[FINETUNED_MODEL] != before[FINETUNED_MODEL], "a changed reward function must retrain"
    assert after[TOKENIZED_SPLITS] == before[TOKENIZED_SPLITS], "the data does not depend on the rewards"
    assert set(get_task(recipe).training_code()) == {"exact_answer", "short"}


def test_reward_rows_keep_their_fields_drop_empty_answers_and_name_a_row_whose_answer_is_no_number(tmp_path):
    task = get_task(reward_recipe(tmp_path, [ANSWER], dataset={"source": "p.jsonl", "columns": {"prompt": "q"}}))
    raw = pd.DataFrame(
        {
            "q": ["What is 2 plus 2?", "What is 3 plus 3?", "What is 4 plus 4?"],
            "answer": [4, None, 8],
            "topic": ["a"] * 3,
        }
    )
    cleaned = clean(raw, task)
    assert cleaned.rows[["prompt", "answer", "topic"]].values.tolist() == [
        ["What is 2 plus 2?", "4", "a"],
        ["What is 4 plus 4?", "8", "a"],
    ]
    assert cleaned.counts()["empty answer"] == 1
    with pytest.raises(DataError, match=r"row 2, field 'answer': 'six' holds no number"):
        clean(raw.assign(answer=["4", "six", "8"]), task)
    twice = pd.DataFrame({"q": ["What is 2 plus 2?", "what is 2 plus 2", "What is 5 plus 5?"], "answer": [4, 5, 10]})
    assert clean(twice, task).counts()["conflicting duplicate"] == 2, "one prompt, two answers: neither is trusted"


def test_pass_at_k_counts_prompts_with_one_sample_given_full_marks_by_every_function(tmp_path):
    from finetune_assets.tasks.reward import scoring

    functions = rewards.load(reward_recipe(tmp_path, [ANSWER, {**ANSWER, "name": "again", "weight": 0.5}]))
    # 3 prompts x 2 samples x 2 functions: full marks from both only in prompt 0's second sample
    sampled = np.array([[[1, 0], [1, 1]], [[1, 0], [0, 1]], [[0, 0], [0, 0]]], dtype=float)
    greedy = np.array([[1, 1], [1, 0], [0, 0]], dtype=float)
    figures = scoring.figures(functions, sampled, greedy, [3, 5])
    assert figures["pass_at_k"] == pytest.approx(1 / 3) and figures["greedy_accuracy"] == pytest.approx(1 / 3)
    assert figures["reward_exact_answer"] == pytest.approx(0.5) and figures["reward_again"] == pytest.approx(1 / 3)
    assert figures["mean_reward"] == pytest.approx(0.5 + 0.5 / 3) and figures["greedy_reward"] == pytest.approx(2.5 / 3)
    assert figures["mean_completion_tokens"] == 4


def test_reward_settings_belong_to_their_task_and_need_a_function(tmp_path):
    with pytest.raises(RecipeError, match=r"needs reward\.functions"):
        reward_recipe(tmp_path, [])
    (tmp_path / "chat.yaml").write_text(
        yaml.safe_dump(
            {"task": "instruction", "base_model": "b", "dataset": {"source": "x.jsonl"}, "reward": {"generations": 8}}
        )
    )
    with pytest.raises(RecipeError, match="reward: is a setting of task: reward"):
        load_recipe(tmp_path / "chat.yaml")


def grpo_trainer(folder: Path, base: Path, function: str):
    """TRL's GRPO trainer as the training process builds it (full fine-tuning), on 4 prompts."""
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    from finetune_assets.training.trainer import training_arguments

    recipe = reward_recipe(
        folder,
        [{"function": function}],
        base=str(base),
        reward={"max_completion_length": 4},
        training={"batch_size": 4},
    )
    task = get_task(recipe)
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = DatasetDict({"train": Dataset.from_list([{"prompt": f"What is {i} plus {i}?"} for i in range(4)])})
    rows = task.tokenize(rows, tokenizer)["train"]
    model = task.load_model(str(base))
    return task.trainer_class()(
        model=model,
        args=training_arguments(task, folder / "checkpoints", processes=1),
        processing_class=tokenizer,
        **task.trainer_options(tokenizer, model, (rows, None), None),
    )


def test_full_fine_tuning_takes_a_grpo_step_and_a_raising_reward_function_stops_training_with_its_name(
    tmp_path, tiny_llama
):
    (tmp_path / "works").mkdir(), (tmp_path / "fails").mkdir()
    write_module(
        tmp_path / "works", "spread_rewards", "def spread(completion, row):\n    return len(set(completion)) / 10\n"
    )
    trainer = grpo_trainer(tmp_path / "works", tiny_llama, "spread_rewards:spread")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    logged = [row for row in trainer.state.log_history if "reward" in row]
    assert len(logged) == trainer.state.global_step == 4, "a log at every step: 4 prompts, 4 samples a step"
    assert all(row["rewards/spread/mean"] == row["reward"] > 0 and "kl" in row for row in logged)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())), "every weight trains"
    write_module(
        tmp_path / "fails", "broken_rewards", "def broken(completion, row):\n    raise RuntimeError('no answer key')\n"
    )
    trainer = grpo_trainer(tmp_path / "fails", tiny_llama, "broken_rewards:broken")
    with pytest.raises(
        RewardError, match=r"'broken' \(reward.functions\[0\]: broken_rewards:broken\) raised RuntimeError"
    ):
        trainer.train()


def write_sums_project(root: Path, base: Path) -> None:
    """A recipe folder with ``sums.yaml`` (GRPO with QLoRA: LoRA on the 4-bit base, on this machine's
    device, the CPU here; the LoRA path and more): 24 sums to answer, rewarded for the exact
    answer and, in a user's function, for varied characters (random weights rarely answer right; the
    second reward gives each group of samples a spread to learn from)."""
    (root / "recipes").mkdir(parents=True)
    rows = [{"prompt": f"What is {i} plus {i}?", "answer": 2 * i} for i in range(24)]
    (root / "recipes" / "sums.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    write_module(
        root / "recipes",
        "variety_rewards",
        "def variety(completion, row):\n    return len(set(completion)) / (1 + len(completion))\n",
    )
    recipe = {
        "task": "reward",
        "base_model": str(base),
        "dataset": {"source": "sums.jsonl"},
        "reward": {
            "functions": [ANSWER, {"function": "variety_rewards:variety", "weight": 0.5}],
            "generations": 4,
            "max_completion_length": 6,
            "beta": 0.04,
        },
        "splits": {"validation": 0.15, "test": 0.25},
        "checks": {"min_rows_per_split": 3, **NO_QUALITY_GATES},
        "method": "qlora",
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "training": {"max_length": 48, "learning_rate": 1e-3, "batch_size": 8, "epochs": 1},
        "generation": {"max_new_tokens": 6},
        "evaluation": {"num_examples": 2},
        "promotion": {"min_test_rows": 3},
    }
    (root / "recipes" / "sums.yaml").write_text(yaml.safe_dump(recipe))


def test_a_grpo_recipe_trains_end_to_end_logs_reward_figures_and_reports_rewards(
    tmp_path, tiny_llama, materialize_recipes
):
    write_sums_project(tmp_path, tiny_llama)
    run = materialize_recipes(tmp_path)
    assert run.result.success, run.logs[-5:]
    model = run.metadata["finetuned_model"]
    steps = model["optimizer_steps"].value
    assert model["method_trained"].value == "qlora" and steps >= 4
    # the seven projections of both layers in 4 bits, on this machine's device
    assert model["four_bit_layers"].value == 14 and model["four_bit_device"].value.startswith(("cpu", "cuda"))
    # a progress line with the reward figures at every 5 % of the steps: here every step
    progress = [line for line in run.logs if line.startswith("step ") and "reward=" in line]
    assert len(progress) == steps, progress
    for figure in ("reward=", "reward_std=", "kl=", "completions/mean_length=", "rewards/variety/mean="):
        assert all(figure in line for line in progress), figure
    assert model["reward_curve"].value.startswith("![reward curve](data:image/png;base64,")
    report = run.metadata["evaluation_report"]
    for metric in ("mean_reward", "reward_exact_answer", "reward_variety", "pass_at_k", "greedy_accuracy"):
        assert 0 <= report[metric].value <= 1 and 0 <= report[f"baseline_{metric}"].value <= 1, metric
    total = report["reward_exact_answer"].value + 0.5 * report["reward_variety"].value
    # each figure is rounded to 4 significant digits: 0.2252 against 0.22525 in one run
    assert report["mean_reward"].value == pytest.approx(total, abs=2e-4), "the total is the weighted sum"
    # each function's reward per test prompt, for a standard error over prompts
    for side, prefix in (("tuned", ""), ("baseline", "baseline_")):
        per_prompt = np.array(json.loads(Path(report["path"].value).read_text())[side]["details"]["sampled_rewards"])
        assert per_prompt.shape == (report["test_rows"].value, 2), side
        assert per_prompt[:, 0].mean() == pytest.approx(report[f"{prefix}reward_exact_answer"].value, abs=1e-6)
    assert 0 < report["mean_completion_tokens"].value <= 6
    assert np.isfinite(report["general_text_perplexity"].value)
    assert (
        "| prompt | answer | base model | base reward | fine-tuned | fine-tuned reward |"
        in report["side_by_side"].value
    )
    checks = {e.asset_check_key.name: e.passed for e in run.result.get_asset_check_evaluations()}
    assert "loss_decreased" not in checks, "GRPO's loss says nothing about learning: not judged"
    assert checks["merge_verified"] and checks["export_reloads"], checks


def test_the_shipped_word_problems_are_what_the_generator_writes_distinct_and_answered():
    from finetune_assets.data import word_problems

    shipped = Path(word_problems.__file__).parents[1] / "recipes" / "word_sums.jsonl"
    rows = [json.loads(line) for line in shipped.read_text().splitlines()]
    assert rows == word_problems.problems(), "regenerate: python -m finetune_assets.data.word_problems"
    assert len({row["prompt"] for row in rows}) == len(rows) == word_problems.COUNT
    assert all(isinstance(row["answer"], int) and 1 <= row["answer"] <= 14 for row in rows), "small numbers"
    assert all(row["prompt"].endswith("have now? Reply with the number only.") for row in rows), "one phrasing"
    (recipe,) = [recipe for recipe in load_recipes() if recipe.name == "word_sums"]
    assert recipe.reward.temperature == 0.7, "docs/reward.md: where the starting model gets about a quarter right"
    cleaned = clean(pd.read_json(shipped, lines=True), get_task(recipe))
    assert len(cleaned.rows) == len(rows), cleaned.counts()
