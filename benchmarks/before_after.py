"""Whole recipes from the command line, on an earlier commit of this repository against the current
code: wall time, each stage's seconds and the recipe's primary metric, side by side.

Why: a change to the shared trainer or to generation touches every recipe, and its worth is what a
user waits for a whole run (`dagster asset materialize --select group:<recipe>` on a fresh
``DAGSTER_HOME``), at the same quality. Both sides run in this virtual environment, on this machine,
alternating (``--repeats``; each side's fastest run is kept); the earlier side runs from a detached
git worktree of ``--before`` (``PYTHONPATH`` points Python at it), removed at the end. The stage
seconds are what each stage's metadata says it took (``stage_seconds``); the primary metric is the
evaluation report's (accuracy for classification, perplexity for instruction tuning).

    .venv/bin/python benchmarks/before_after.py --before 418e89b~1
    .venv/bin/python benchmarks/before_after.py --before 418e89b~1 --recipes chatbot_sft --repeats 2
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import common

RECIPES = ("tweet_sentiment", "chatbot_sft")  # the quickstart and the causal-LM recipe


def run_recipe(recipe: str, code: Path, work: Path) -> dict:
    """One whole run of ``recipe`` with the code in ``code`` on a fresh instance under ``work``."""
    work.mkdir(parents=True)
    env = common.fresh_instance(work, PYTHONPATH=str(code))
    seconds = common.cli_materialize(env, recipe, work / f"{recipe}.log")
    meta = common.latest_metadata(env["DAGSTER_HOME"], recipe, common.SIX_STAGES)
    return {"seconds": seconds, "meta": meta}


def primary_metric(recipe: str) -> str:
    from finetune_assets.tasks import get_task

    return get_task(common.load_recipe(recipe)).primary_metric


def figures_of(recipe: str, runs: dict[str, list[dict]]) -> dict:
    """Each side's fastest run: wall seconds, stage seconds, the primary metric; then after/before."""
    metric, figures = primary_metric(recipe), {}
    fastest = {side: min(trials, key=lambda run: run["seconds"]) for side, trials in runs.items()}
    for side, run in fastest.items():
        figures[f"{recipe} {side} wall seconds"] = round(run["seconds"], 1)
        stages = {stage: run["meta"][stage].get("stage_seconds") for stage in common.SIX_STAGES}
        figures[f"{recipe} {side} stage seconds"] = ", ".join(f"{k} {v}" for k, v in stages.items())
        figures[f"{recipe} {side} {metric}"] = run["meta"]["evaluation_report"].get(metric)
    figures[f"{recipe} wall time after / before"] = round(fastest["after"]["seconds"] / fastest["before"]["seconds"], 3)
    return figures


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    cli.add_argument("--recipes", nargs="+", default=list(RECIPES), help="packaged recipes to run whole")
    common.add_repeats(cli)
    args = cli.parse_args()
    before = subprocess.run(
        ["git", "rev-parse", "--short", args.before], cwd=common.REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    figures = {"cpu": common.cpu_model(), "before": before, "after": "this working tree"}
    with tempfile.TemporaryDirectory(prefix="before-after-") as scratch:
        old = Path(scratch) / "before-code"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), before], cwd=common.REPO, check=True)
        try:
            for recipe in args.recipes:
                sides = {
                    "before": lambda work, r=recipe: run_recipe(r, old, work),
                    "after": lambda work, r=recipe: run_recipe(r, common.REPO, work),
                }
                figures.update(figures_of(recipe, common.alternate(sides, args.repeats, f"{recipe}-")))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=common.REPO, check=True)
    common.print_figures("before_after", figures, quick=False)


if __name__ == "__main__":
    main()
