"""``chatbot_dpo`` measured: preference tuning after SFT, from the command line on a fresh ``DAGSTER_HOME``.

Why: the shipped preference recipe must run on two CPU cores in at most 10 minutes and must teach
something the starting model did not already do. This times ``dagster asset materialize --select
'group:chatbot_dpo'`` on a new instance and prints what the evaluation report says of the tuned
model against its starting model (``chatbot_sft``'s champion) on the same held-out pairs: preference
accuracy and margins of DPO's implicit reward, the plain-likelihood ranking and log-probability
margin, the general-text perplexity (forgetting),
and three test prompts answered by both models beside the corpus's answer.

``chatbot_dpo`` starts from ``chatbot_sft``'s champion, so one must exist: ``--sft-artifacts DIR``
names an artifacts root that holds one (its ``champion.json`` is copied into the fresh artifacts
root; the export itself is read where it is). Without it, ``chatbot_sft`` is materialized first on
the same fresh instance and its time is reported apart. There is no ``--quick``: the recipe's
self-play pairs take the starting model's answers to every corpus prompt whatever is trained.

    .venv/bin/python benchmarks/chatbot_dpo.py --sft-artifacts $DAGSTER_HOME/artifacts
    .venv/bin/python benchmarks/chatbot_dpo.py          # chatbot_sft first (about 6 more minutes)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import common

RECIPE, STARTS_FROM = "chatbot_dpo", "chatbot_sft"
STAGES = common.SIX_STAGES
COMPARED = (
    "preference_accuracy",
    "reward_margin",
    "chosen_reward",
    "rejected_reward",
    "likelihood_accuracy",
    "logp_margin",
    "chosen_logp",
    "rejected_logp",
    "general_text_perplexity",
)


def starting_champion(env: dict, sft_artifacts: str | None) -> float | None:
    """``chatbot_sft``'s champion in the fresh artifacts root: copied from ``sft_artifacts``, or made
    by materializing ``chatbot_sft`` (its seconds returned)."""
    if sft_artifacts is None:
        return materialize(env, STARTS_FROM)
    found = Path(sft_artifacts, STARTS_FROM, "exported_model", "champion.json")
    if not found.is_file():
        sys.exit(f"{found}: no chatbot_sft champion there; materialize chatbot_sft first or leave --sft-artifacts out")
    target = Path(env["FINETUNE_ARTIFACTS_DIR"], STARTS_FROM, "exported_model")
    target.mkdir(parents=True)
    shutil.copy(found, target / "champion.json")
    return None


def materialize(env: dict, recipe: str) -> float:
    """The CLI run of ``recipe``'s group; its seconds (the log goes next to the instance)."""
    return common.cli_materialize(env, recipe, Path(env["DAGSTER_HOME"]).parent / f"{recipe}.log")


def side_by_side(report: Path, count: int = 3) -> list[dict]:
    """The first ``count`` distinct test prompts: the corpus answer (chosen), the starting model's own answer
    (rejected), and what each model answers now."""
    both = json.loads(report.read_text())
    shown = {}
    for tuned, start in zip(both["tuned"]["samples"], both["baseline"]["samples"]):
        shown.setdefault(
            tuned["text"],
            {
                "prompt": tuned["text"],
                "chosen (corpus)": tuned["reference"],
                "rejected (starting model, when the data was made)": tuned["rejected"],
                "starting model": start["prediction"],
                "tuned": tuned["prediction"],
            },
        )
    return list(shown.values())[:count]


def figures_of(meta: dict, seconds: float, sft_seconds: float | None) -> dict:
    report, cleaned = meta["evaluation_report"], meta["clean_dataset"]
    return {
        "chatbot_dpo_wall_seconds": seconds,
        "chatbot_sft_wall_seconds_before_it": sft_seconds,
        **{f"{stage}_seconds": meta[stage].get("stage_seconds") for stage in STAGES},
        "train_seconds": meta["finetuned_model"].get("train_seconds"),
        "pairs_after_cleaning": cleaned.get("pairs"),
        "dropped_chosen_equals_rejected": cleaned.get("dropped_chosen_equals_rejected"),
        "chosen_longer_share": cleaned.get("chosen_longer_share"),
        "test_pairs_scored": report.get("test_rows"),
        **{f"{key} (tuned / start)": (report.get(key), report.get(f"baseline_{key}")) for key in COMPARED},
        "decision": meta["exported_model"].get("decision"),
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--sft-artifacts", metavar="DIR", help="an artifacts root holding chatbot_sft's champion")
    cli.add_argument("--keep", metavar="DIR", help="work in DIR (new) and keep it: the run logs, artifacts, instance")
    args = cli.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatbot-dpo-") as scratch:
        work = Path(args.keep or scratch)
        env = common.fresh_instance(work)
        sft_seconds = starting_champion(env, args.sft_artifacts)
        seconds = materialize(env, RECIPE)
        meta = common.latest_metadata(env["DAGSTER_HOME"], RECIPE, STAGES)
        figures = figures_of(meta, seconds, sft_seconds)
        samples = side_by_side(Path(meta["evaluation_report"]["path"]))
    common.print_figures("chatbot_dpo", figures, quick=False)
    common.print_side_by_side(samples)


if __name__ == "__main__":
    main()
