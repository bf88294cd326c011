"""What running fine-tuning as Dagster assets costs over a plain Trainer script doing the same work.

Why: the asset chain adds materialization boundaries (parquet and datasets on disk, the model
saved and loaded again between stages), fingerprints, asset checks, plots and a model card. This
measures the whole bill, end to end, on the quickstart recipe ``tweet_sentiment``.

Both sides, back to back in this process, on the same rows, model, hyperparameters (read from the
recipe, with run-config overrides in ``--quick``) and seed:

- pipeline: ``build_definitions`` on a copy of the recipe and a fresh artifacts root, then
  ``dagster.materialize`` of the six assets and their checks on an ephemeral instance with
  ``RunSettings(force=True)`` (nothing cached): read, clean, split, tokenize, train (in its own
  process started through Dagster Pipes: the process start, its imports and the model load count
  here, and so do its checkpoints), evaluate base and tuned model on the test rows, export (merged
  model, card, ``pipeline`` smoke test).
- plain: pandas reads the same packaged CSV (latin-1), the project's own ``cleaning.clean`` (same
  rules, so the same rows), the same seeded stratified split, tokenization with ``datasets.map``,
  the HF ``Trainer`` directly (same arguments as ``finetune_assets.training.trainer``, validation each
  epoch), tuned and base model predicted on the same test rows, the model saved once.

Not in the plain side, on purpose, because they are the pipeline's overhead: the training
process's start and checkpoints, parquet/Arrow writes between stages, reloading the checkpoint for
evaluation and export, the asset checks, the truncation figure (from the same single tokenization
pass), plots, the model card and the export's smoke test. Both sides train and predict in the
precision the recipe resolves to here (bf16 autocast where the CPU or GPU has it). Library imports are paid before either clock starts (both sides use the same libraries;
``transformers.Trainer`` included, whose import loads peft and bitsandbytes). Training time swings
by several percent between identical runs, so the script also reports each side's time outside
training and their difference: the pipeline's overhead in seconds, which hardly depends on how
many rows are trained, and ``ratio_at_equal_training_time``, the ratio with that overhead alone
added to the plain side's time.

    .venv/bin/python benchmarks/pipeline_overhead.py --quick   # 256 training rows, 200 test rows
    .venv/bin/python benchmarks/pipeline_overhead.py           # the recipe as shipped (every training tweet, 19,320)
    .venv/bin/python benchmarks/pipeline_overhead.py --repeats 3   # alternate, keep each side's fastest
"""

from __future__ import annotations

from pathlib import Path

import common

RECIPE = "tweet_sentiment"
QUICK = {"max_train_samples": 256, "max_eval_samples": 200}
TARGET = 1.05


def pipeline(work: Path, settings: dict) -> dict:
    """The chain through Dagster, nothing cached, on a fresh artifacts root under ``work``."""
    recipes = common.recipe_folder([RECIPE], work / "recipes")
    events, seconds = common.materialize(recipes, work / "artifacts", force=True, **settings)
    assert not any(common.meta(m, "cache_hit") for m in events.values()), "force=True must not reuse"
    stages = sum(common.meta(m, "stage_seconds") or 0.0 for m in events.values())
    report = events["evaluation_report"]
    return {
        "seconds": seconds,
        "stage_seconds": stages,
        "train_seconds": common.meta(events["finetuned_model"], "train_seconds"),
        "accuracy": common.meta(report, "accuracy"),
        "base_accuracy": common.meta(report, "baseline_accuracy"),
    }


def plain(recipe, out_dir: Path) -> dict:
    """The same work as a plain script: no assets, no files between steps."""
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer

    spec = recipe.training
    with common.stopwatch() as seconds:
        frames = common.tweet_splits(recipe)
        tokenizer = AutoTokenizer.from_pretrained(common.minilm_dir())

        def encode(batch):
            encoded = tokenizer(batch["text"], truncation=True, max_length=spec.max_length)
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            return encoded

        splits = DatasetDict(
            {name: Dataset.from_pandas(frame, preserve_index=False) for name, frame in frames.items()}
        ).map(encode, batched=True)
        test = common.take(splits["test"], spec.max_eval_samples, spec.seed)
        collator = DataCollatorWithPadding(tokenizer)
        sampling = "group_by_length" if spec.group_by_length else "random"
        args = common.training_arguments(
            out_dir / "scratch", recipe, eval_strategy="epoch", train_sampling_strategy=sampling
        )
        trainer = Trainer(
            model=common.classifier(recipe),
            args=args,
            data_collator=collator,
            train_dataset=common.take(splits["train"], spec.max_train_samples, spec.seed),
            eval_dataset=common.take(splits["validation"], spec.max_eval_samples, spec.seed),
            processing_class=tokenizer,
        )
        trained = trainer.train()
        tuned = common.accuracy(trainer.predict(test))
        trainer.save_model(str(out_dir / "model"))  # weights and tokenizer
        base = Trainer(
            model=common.classifier(recipe),
            data_collator=collator,
            processing_class=tokenizer,
            args=common.training_arguments(out_dir / "scratch", recipe, train_sampling_strategy=sampling),
        )
        baseline = common.accuracy(base.predict(test))
    return {
        "seconds": seconds(),
        "train_seconds": trained.metrics["train_runtime"],
        "accuracy": tuned,
        "base_accuracy": baseline,
    }


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument(
        "--plain-first",
        action="store_true",
        help="run the plain script first (default: the pipeline first, which gives it the colder caches)",
    )
    common.add_repeats(cli)
    args = cli.parse_args()
    settings = QUICK if args.quick else {}
    # Imports both sides share are paid here, before either clock starts.
    import datasets  # noqa: F401
    from transformers import Trainer  # noqa: F401  (loads peft and bitsandbytes: about 3 s, paid once per process)

    import finetune_assets  # noqa: F401  (dagster too: the process a run executes in has it loaded)

    recipe = common.load_recipe(RECIPE, **settings)
    sides = {"plain": lambda folder: plain(recipe, folder), "pipeline": lambda folder: pipeline(folder, settings)}
    order = ["plain", "pipeline"] if args.plain_first else ["pipeline", "plain"]
    trials = common.alternate({name: sides[name] for name in order}, args.repeats, "bench-overhead-")
    ours, theirs = (min(trials[name], key=lambda run: run["seconds"]) for name in ("pipeline", "plain"))
    outside = {name: run["seconds"] - run["train_seconds"] for name, run in (("pipeline", ours), ("plain", theirs))}
    common.print_figures(
        "pipeline_overhead",
        {
            "recipe": f"{RECIPE}, {recipe.training.max_train_samples} training rows, "
            f"{recipe.training.max_eval_samples} test rows, {recipe.training.epochs:g} epoch(s)",
            "order": f"{' then '.join(order)}, {args.repeats} time(s); fastest run of each side",
            "pipeline_seconds": round(ours["seconds"], 1),
            "pipeline_inside_stages_seconds": round(ours["stage_seconds"], 1),
            "pipeline_outside_stages_seconds": round(ours["seconds"] - ours["stage_seconds"], 1),
            "pipeline_train_seconds": round(ours["train_seconds"], 1),
            "plain_seconds": round(theirs["seconds"], 1),
            "plain_train_seconds": round(theirs["train_seconds"], 1),
            "pipeline_accuracy": round(ours["accuracy"], 4),
            "plain_accuracy": round(theirs["accuracy"], 4),
            "pipeline_base_accuracy": round(ours["base_accuracy"], 4),
            "plain_base_accuracy": round(theirs["base_accuracy"], 4),
            "pipeline_outside_training_seconds": round(outside["pipeline"], 1),
            "plain_outside_training_seconds": round(outside["plain"], 1),
            "overhead_seconds_outside_training": round(outside["pipeline"] - outside["plain"], 1),
            "ratio_pipeline_to_plain": round(ours["seconds"] / theirs["seconds"], 3),
            # Both sides train with the same Trainer and arguments, so a gap in training time is the
            # machine's noise; this ratio charges the pipeline only for what it does outside training.
            "ratio_at_equal_training_time": round(
                (theirs["seconds"] + outside["pipeline"] - outside["plain"]) / theirs["seconds"], 3
            ),
            "target_ratio": f"<= {TARGET}",
        },
        args.quick,
    )


if __name__ == "__main__":
    main()
