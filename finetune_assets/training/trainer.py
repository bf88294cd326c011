"""Fine-tuning with the Hugging Face Trainer, the same for every task family and method.

Dynamic padding (the task's collator), length-grouped batches, evaluation on the validation split
each epoch, optional early stopping, live progress in the run log. The checkpoint folder holds
the weights (or the LoRA adapter), the tokenizer, the log history and the settings used.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset, load_from_disk
from transformers import EarlyStoppingCallback, set_seed

from finetune_assets.recipes import Recipe
from finetune_assets.report import plots
from finetune_assets.tasks.base import TaskFamily
from finetune_assets.training import methods
from finetune_assets.training.progress import RunLogProgress
from finetune_assets.training.tokenizer import load_tokenizer


def device_name() -> str:
    return f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"


def take(split: Dataset, limit: int | None, seed: int) -> Dataset:
    """At most ``limit`` rows, a seeded random sample so small runs stay representative."""
    if limit is None or limit >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(limit))


def train(recipe: Recipe, task: TaskFamily, splits_dir: Path, base_location: str, out_dir: Path,
          log) -> dict:
    """Train and save into ``out_dir``; return figures for the asset metadata."""
    spec = recipe.training
    method = methods.preflight(recipe, log)  # before any data is read
    set_seed(spec.seed)
    tokenizer = load_tokenizer(base_location, recipe)
    splits = load_from_disk(str(splits_dir))
    train_rows = take(splits["train"], spec.max_train_samples, spec.seed)
    validation_rows = take(splits["validation"], spec.max_eval_samples, spec.seed)
    model = methods.prepare(methods.load_base(base_location, recipe, task, method), recipe, task)
    trainable, total = methods.parameter_counts(model)
    log.info(f"{method}: {trainable:,} of {total:,} parameters trainable on {device_name()}, "
             f"{len(train_rows)} training rows")
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="trainer-", dir=out_dir) as scratch:
        args = task.training_arguments_class()(
            output_dir=scratch,
            num_train_epochs=spec.epochs,
            learning_rate=spec.learning_rate,
            per_device_train_batch_size=spec.batch_size,
            per_device_eval_batch_size=spec.eval_batch_size,
            gradient_accumulation_steps=spec.gradient_accumulation_steps,
            activation_checkpointing=spec.gradient_checkpointing,
            weight_decay=spec.weight_decay,
            warmup_steps=spec.warmup,
            eval_strategy="epoch",
            save_strategy="epoch" if spec.early_stopping_patience else "no",
            save_total_limit=1,
            load_best_model_at_end=bool(spec.early_stopping_patience),
            metric_for_best_model="eval_loss",
            logging_steps=spec.logging_steps,
            train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
            seed=spec.seed,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            use_cpu=not cuda,
            report_to=[],
            disable_tqdm=True,
            **task.extra_training_arguments(recipe),
        )
        callbacks = [RunLogProgress(log)]
        if spec.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=spec.early_stopping_patience))
        trainer = task.trainer_class()(
            model=model, args=args, train_dataset=train_rows, eval_dataset=validation_rows,
            data_collator=task.collator(tokenizer, model), processing_class=tokenizer,
            callbacks=callbacks)
        started = time.monotonic()
        result = trainer.train()
        seconds = time.monotonic() - started
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    history = trainer.state.log_history
    (out_dir / "log_history.json").write_text(json.dumps(history, indent=1))
    (out_dir / "training_settings.json").write_text(json.dumps(
        recipe.section("base_model", "method", "lora", "training"), indent=2))
    plots.loss_curve(history, out_dir / "loss_curve.png")
    eval_losses = [row["eval_loss"] for row in history if "eval_loss" in row]
    figures = {
        "train_seconds": round(seconds, 2),
        "train_samples_per_second": round(result.metrics.get("train_samples_per_second", 0.0), 2),
        "train_loss": round(result.training_loss, 4),
        "final_validation_loss": round(eval_losses[-1], 4) if eval_losses else None,
        "epochs_run": round(trainer.state.epoch or 0, 3),
        "training_rows": len(train_rows),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_fraction": round(trainable / total, 6),
        "lora_target_modules": methods.lora_targets(model),
        "device": device_name(),
        "method_trained": method,
        "qlora_cpu_fallback": method != recipe.method if recipe.method == "qlora" else None,
    }
    (out_dir / "training_figures.json").write_text(json.dumps(figures, indent=2))
    return figures
