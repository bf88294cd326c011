"""Causal-LM training with logits at the answer tokens only, against every logit: the pipeline's own
training on a packaged recipe, both ways in one process.

Why: a causal LM's LM head projects every position onto the vocabulary (49,152 words for SmolLM2),
while the loss covers the answers alone; ``finetune_assets/tasks/causal_lm/answer_logits.py`` has
the model compute logits only where a target follows. This measures what that buys in the
pipeline's training step, apart from the rest of a run (``before_after.py`` times whole runs,
where a run-to-run spread of ~10 % hides a small gain).

Both sides run ``finetune_assets.training.trainer.train`` on the same tokenized training rows (made
once by the pipeline's own data stages) for one epoch, alternating (``--repeats``; each side's
fastest run is kept). The "every logit" side is the same code with ``answer_logits.supported``
answering no, as it does for a model with code of its own: its collator adds no mask. Both sides'
training losses are printed; they differ only by float rounding, since the loss is the same sum.

    .venv/bin/python benchmarks/answer_logits.py --quick                  # chatbot_sft, 16 rows, one run a side
    .venv/bin/python benchmarks/answer_logits.py                          # chatbot_sft, 160 rows, 3 runs a side
    .venv/bin/python benchmarks/answer_logits.py --recipe paper_summaries # 64 rows, 3 runs a side
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import common

ROWS = {"chatbot_sft": 160, "paper_summaries": 64}  # about 40 s and 90 s a run on 2 Zen 4 cores


def recipe_for(name: str, rows: int):
    return common.load_recipe(name, max_train_samples=rows, max_eval_samples=4, epochs=1)


def train_side(name: str, rows: int, splits: str, targets_only: bool):
    """One side: a callable that trains into a scratch folder and returns the training figures."""

    def run(out: Path) -> dict:
        from finetune_assets.tasks.causal_lm import answer_logits

        supported = answer_logits.supported
        if not targets_only:
            answer_logits.supported = lambda _model: False
        try:
            figures = common.train_once(recipe_for(name, rows), splits, out, "answer-logits")
        finally:
            answer_logits.supported = supported
        assert figures["logits_at_targets_only"] is targets_only, figures  # each side ran as named
        return figures

    return run


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--recipe", choices=sorted(ROWS), default="chatbot_sft")
    cli.add_argument("--rows", type=int, help="training rows per side (default: 160 chatbot_sft, 64 paper_summaries)")
    common.add_repeats(cli)
    args = cli.parse_args()
    rows = args.rows or (16 if args.quick else ROWS[args.recipe])
    repeats = args.repeats if args.repeats > 1 or args.quick else 3
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-answer-logits-") as tmp:
        splits, _ = common.prepared_splits_and_base(recipe_for(args.recipe, rows), Path(tmp))
        sides = {
            side: train_side(args.recipe, rows, splits, side == "targets_only")
            for side in ("targets_only", "every_logit")
        }
        trials = common.alternate(sides, repeats, "bench-answer-logits-runs-")
    best = {side: min(runs, key=lambda run: run["train_seconds"]) for side, runs in trials.items()}
    common.print_figures("answer_logits", figures(args.recipe, rows, repeats, trials, best), args.quick)


def figures(recipe: str, rows: int, repeats: int, trials: dict, best: dict) -> dict:
    spec = recipe_for(recipe, rows).training
    return {
        "setup": f"{recipe}: LoRA, batch {spec.batch_size}, max_length {spec.max_length}, {rows} training rows, "
        f"one epoch ({best['targets_only']['optimizer_steps']} optimizer steps), fastest of {repeats} "
        "alternating runs per side",
        "cpu": common.cpu_model(),
        "machine": "not quiet unless stated: only the ratio of the two sides, measured in this run, means anything",
        **{
            f"{side}_train_seconds_each_run": ", ".join(str(run["train_seconds"]) for run in runs)
            for side, runs in trials.items()
        },
        **{f"{side}_train_loss": run["train_loss"] for side, run in best.items()},
        **{f"{side}_train_seconds": run["train_seconds"] for side, run in best.items()},
        "ratio_train_seconds_targets_only_to_every_logit": round(
            best["targets_only"]["train_seconds"] / best["every_logit"]["train_seconds"], 3
        ),
    }


if __name__ == "__main__":
    main()
