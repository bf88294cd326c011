"""``word_sums`` measured: reward-driven tuning (GRPO) from the command line on a fresh ``DAGSTER_HOME``.

Why: the shipped reward recipe must run on two CPU cores in at most 10 minutes, and its held-out
reward must rise for a reason one can see. This times ``dagster asset materialize --select
'group:word_sums'`` on a new instance and prints what the evaluation report says of the tuned model
against the starting model (SmolLM2-135M-Instruct as packaged) on the same held-out problems: the
mean total reward and each function's, pass@k, greedy accuracy and reward, completion length, the
general-text perplexity (forgetting), each function's mean with its standard error over the test
prompts and the tuned model's gain over the starting model with its paired standard error (both
answer the same prompts with the same seed), the reward figures the training logged first and last,
and three test problems answered by both models.

    .venv/bin/python benchmarks/word_sums.py
    .venv/bin/python benchmarks/word_sums.py --keep /tmp/word-sums   # keep the log, artifacts, instance
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import common
import numpy as np

RECIPE = "word_sums"
STAGES = common.SIX_STAGES
FUNCTIONS = ("exact_answer", "ends_with_number")  # the recipe's reward functions, in its order
COMPARED = (
    "mean_reward",
    *(f"reward_{name}" for name in FUNCTIONS),
    "pass_at_k",
    "greedy_accuracy",
    "greedy_reward",
    "mean_completion_tokens",
    "general_text_perplexity",
)


def training_rewards(model_folder: Path) -> dict:
    """The mean reward and per-function rewards TRL logged at the first and the last logged step."""
    logged = [row for row in json.loads((model_folder / "log_history.json").read_text()) if "reward" in row]
    keys = ("reward", "reward_std", "kl", "rewards/exact_answer/mean", "completions/mean_length")
    return {f"training {key} (first / last log)": (logged[0].get(key), logged[-1].get(key)) for key in keys}


def stderr_figures(report: Path) -> dict:
    """Each function's sampled and greedy mean per model with its standard error over prompts, and the
    tuned model's gain with the standard error of the per-prompt differences: whether a gain is more
    than the noise of 40 prompts."""
    both = json.loads(report.read_text())
    figures = {}
    for kind in ("sampled_rewards", "greedy_rewards"):
        tuned, start = (np.array(both[side]["details"][kind]) for side in ("tuned", "baseline"))
        for i, name in enumerate(FUNCTIONS):
            pair = (tuned[:, i], start[:, i], tuned[:, i] - start[:, i])
            shown = [f"{column.mean():.3f} ± {column.std(ddof=1) / np.sqrt(len(column)):.3f}" for column in pair]
            figures[f"{kind[:-8]} {name} ± s.e. (tuned / start / gain)"] = tuple(shown)
    return figures


def side_by_side(report: Path, count: int = 3) -> list[dict]:
    both = json.loads(report.read_text())
    return [
        {
            "prompt": tuned["text"],
            "answer": tuned["reference"],
            "starting model": start["prediction"],
            "tuned": tuned["prediction"],
        }
        for tuned, start in list(zip(both["tuned"]["samples"], both["baseline"]["samples"]))[:count]
    ]


def figures_of(meta: dict, seconds: float) -> dict:
    report, model = meta["evaluation_report"], meta["finetuned_model"]
    return {
        "word_sums_wall_seconds": seconds,
        **{f"{stage}_seconds": meta[stage].get("stage_seconds") for stage in STAGES},
        "train_seconds": model.get("train_seconds"),
        "optimizer_steps": model.get("optimizer_steps"),
        "test_prompts_scored": report.get("test_rows"),
        **{f"{key} (tuned / start)": (report.get(key), report.get(f"baseline_{key}")) for key in COMPARED},
        **training_rewards(Path(model["path"])),
        "decision": meta["exported_model"].get("decision"),
        "device": common.device_label(),
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--keep", metavar="DIR", help="work in DIR (new) and keep it: the run log, artifacts, instance")
    args = cli.parse_args()
    with tempfile.TemporaryDirectory(prefix="word-sums-") as scratch:
        work = Path(args.keep or scratch)
        env = common.fresh_instance(work)
        seconds = common.cli_materialize(env, RECIPE, work / f"{RECIPE}.log")
        meta = common.latest_metadata(env["DAGSTER_HOME"], RECIPE, STAGES)
        figures = {**figures_of(meta, seconds), **stderr_figures(Path(meta["evaluation_report"]["path"]))}
        samples = side_by_side(Path(meta["evaluation_report"]["path"]))
    common.print_figures(RECIPE, figures, quick=False)
    common.print_side_by_side(samples)


if __name__ == "__main__":
    main()
