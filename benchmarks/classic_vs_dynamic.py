"""The course-notebook way of batching against ours: same data, model and hyperparameters.

Why: the classic fine-tuning notebooks tokenize with ``padding="max_length"`` (every tweet padded
to 128 tokens), train with the default collator and the Trainer's plain seeded random order. The
project pads each batch only to its longest row (``DataCollatorWithPadding``) and groups rows of
similar length into batches (``train_sampling_strategy="group_by_length"``), so a batch of short
tweets costs what short tweets cost. This measures what that buys in training throughput, and
checks it costs no accuracy.

Same on both sides: the tweet rows of the ``tweet_sentiment`` recipe (read and cleaned as the
pipeline does), truncation at ``--max-length`` (128, the notebooks' value; the recipe uses 64),
the MiniLM model and its seeded fresh head, the recipe's epochs, learning rate, batch size, warmup
and seed. Accuracy comes from each ``PredictionOutput``'s own ``label_ids`` (length grouping also
reorders the test rows). Our side runs first, so it gets the colder caches. Samples/s swings with
a busy machine's load; the tokens each side computes per training row (padding included) do not,
and their ratio is the speedup to expect where the model's arithmetic dominates.

    .venv/bin/python benchmarks/classic_vs_dynamic.py --quick   # 256 training rows, 500 test rows
    .venv/bin/python benchmarks/classic_vs_dynamic.py           # 2,000 training rows, 1,000 test rows
    .venv/bin/python benchmarks/classic_vs_dynamic.py --repeats 2   # alternate, keep each side's fastest
"""

from __future__ import annotations

import functools
from pathlib import Path

import common

RECIPE = "tweet_sentiment"
ROWS = {
    True: {"max_train_samples": 256, "max_eval_samples": 500},
    False: {"max_train_samples": 2000, "max_eval_samples": 1000},
}
TARGET = 2.0


def encoded(recipe, frames: dict, tokenizer, max_length: int, classic: bool) -> dict:
    """The training and test rows tokenized the notebook way (padded to ``max_length``) or ours."""
    from datasets import Dataset

    spec = recipe.training

    def encode(batch):
        out = tokenizer(
            batch["text"], truncation=True, max_length=max_length, padding="max_length" if classic else False
        )
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    limits = {"train": spec.max_train_samples, "test": spec.max_eval_samples}
    return {
        name: common.take(Dataset.from_pandas(frames[name], preserve_index=False), limit, spec.seed).map(
            encode, batched=True, remove_columns=["text"]
        )
        for name, limit in limits.items()
    }


def run(recipe, data: dict, tokenizer, classic: bool, scratch: Path) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, default_data_collator

    args = common.training_arguments(
        scratch, recipe, train_sampling_strategy="random" if classic else "group_by_length"
    )
    trainer = Trainer(
        model=common.classifier(recipe),
        args=args,
        train_dataset=data["train"],
        data_collator=default_data_collator if classic else DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    metrics = trainer.train().metrics
    accuracy = common.accuracy(trainer.predict(data["test"]))
    # Tokens the model computes per training row, padding included: the load-independent reason
    # for the speed difference (collating one more epoch after training costs well under a second).
    computed = sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())
    return {
        "samples_per_second": metrics["train_samples_per_second"],
        "seconds": metrics["train_runtime"],
        "accuracy": accuracy,
        "tokens_per_row": computed / len(data["train"]),
    }


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--max-length", type=int, default=128, help="truncation (and the classic padding) length")
    cli.add_argument("--train-rows", type=int, help="training rows (default 2,000; 256 with --quick)")
    common.add_repeats(cli)
    args = cli.parse_args()
    rows = dict(ROWS[args.quick], **({"max_train_samples": args.train_rows} if args.train_rows else {}))
    recipe = common.load_recipe(RECIPE, **rows)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(common.minilm_dir())
    frames = common.tweet_splits(recipe)
    sides = {"dynamic": False, "classic": True}
    data = {name: encoded(recipe, frames, tokenizer, args.max_length, classic) for name, classic in sides.items()}
    trials = common.alternate(
        {name: functools.partial(run, recipe, data[name], tokenizer, classic) for name, classic in sides.items()},
        args.repeats,
        "bench-padding-",
    )
    dynamic, classic = (max(trials[name], key=lambda result: result["samples_per_second"]) for name in sides)
    spec, train = recipe.training, data["dynamic"]["train"]
    common.print_figures(
        "classic_vs_dynamic",
        {
            "setup": f"{RECIPE} rows, {len(train)} train / {len(data['dynamic']['test'])} test, max_length "
            f"{args.max_length}, {spec.epochs:g} epoch(s), lr {spec.learning_rate:g}, batch {spec.batch_size}, "
            f"dynamic first, {args.repeats} time(s), fastest run of each side",
            "mean_real_tokens_per_row": round(sum(map(sum, train["attention_mask"])) / len(train), 1),
            "classic_computed_tokens_per_row": round(classic["tokens_per_row"], 1),
            "dynamic_computed_tokens_per_row": round(dynamic["tokens_per_row"], 1),
            "classic_samples_per_s": round(classic["samples_per_second"], 2),
            "dynamic_samples_per_s": round(dynamic["samples_per_second"], 2),
            "classic_train_seconds": round(classic["seconds"], 1),
            "dynamic_train_seconds": round(dynamic["seconds"], 1),
            "classic_accuracy": round(classic["accuracy"], 4),
            "dynamic_accuracy": round(dynamic["accuracy"], 4),
            "accuracy_points_dynamic_minus_classic": round(100 * (dynamic["accuracy"] - classic["accuracy"]), 2),
            "ratio_computed_tokens_classic_to_dynamic": round(classic["tokens_per_row"] / dynamic["tokens_per_row"], 2),
            "speedup_samples_per_s": round(dynamic["samples_per_second"] / classic["samples_per_second"], 2),
            "target_speedup": f">= {TARGET} at equal or better accuracy",
        },
        args.quick,
    )


if __name__ == "__main__":
    main()
