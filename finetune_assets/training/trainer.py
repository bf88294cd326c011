"""Fine-tuning with the Hugging Face Trainer, the same for every task family and method.

Dynamic padding (the task's collator), length-grouped batches, evaluation on the validation split
each epoch, optional early stopping, live progress in the run log, checkpoints every
``training.save_steps`` that a re-run resumes from, data parallel over the processes a launcher
started (DDP through the Trainer: gloo on CPU, NCCL on GPUs), and the precision
:mod:`finetune_assets.models.precision` resolves for this machine (bf16 autocast where it has it).
The output folder holds the weights (or the LoRA adapter), the tokenizer, the log history, the
recipe as trained (``recipe.json``) and, when ``training.report_to`` names tensorboard, the
TensorBoard event files (``tensorboard/``); other trackers get the figures through the Trainer.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset, load_from_disk
from transformers import EarlyStoppingCallback, PrinterCallback, TrainerCallback, set_seed

from finetune_assets.models import attention, dropout, methods, quantization
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.recipes import Recipe, save_resolved
from finetune_assets.report import plots
from finetune_assets.tasks.base import TaskFamily
from finetune_assets.training import checkpoints, command, compute, tracking
from finetune_assets.training.progress import RunLogProgress


def device_name() -> str:
    return f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"


def peak_memory() -> dict:
    """This process's peak resident memory so far (``peak_rss_mib``) and, on CUDA, the peak GPU
    memory torch allocated (``cuda_peak_mib``; None without CUDA): what a run needs of a machine."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {
        "peak_rss_mib": round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1),
        "cuda_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
    }


def take(split: Dataset, limit: int | None, seed: int) -> Dataset:
    """At most ``limit`` rows, a seeded random sample so small runs stay representative."""
    if limit is None or limit >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(limit))


def train(
    task: TaskFamily,
    splits_dir: Path,
    out_dir: Path,
    log,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    resume: tuple[int, Path] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict:
    """Train the recipe's model and save it into ``out_dir``; return figures for the asset metadata.

    Checkpoints go into ``checkpoint_dir`` (None: a scratch folder) every ``training.save_steps``. It
    resumes from ``resume`` (step, folder) where the launcher keeps the checkpoints (Ray Train, whose
    ``callbacks`` copy each to its storage), else from the newest complete one of this ``fingerprint``
    in ``checkpoint_dir`` (a crashed attempt's). Under DDP each process trains on its share of every
    batch; rank 0 alone writes ``out_dir`` and the checkpoints' weights.
    """
    recipe, spec = task.recipe, task.recipe.training
    method = methods.preflight(recipe, log)  # before any data is read
    processes = command.world_size()
    resume = resume or _resume_point(checkpoint_dir, fingerprint, processes, log)
    set_seed(spec.seed)
    tokenizer = load_tokenizer(task.base_location, recipe)
    train_rows, validation_rows = _rows(task, splits_dir)
    model = methods.load_base(task, method)
    adapter = methods.adapter_config(model, task) if task.trainer_applies_adapter else None
    if not task.trainer_applies_adapter:
        model = methods.prepare(model, task)
    rows, collator, packed = _packed(task, (train_rows, validation_rows), tokenizer, model, processes, log)
    choices = compute_choices(task, len(rows[0]), processes)
    with contextlib.ExitStack() as scratch:
        if checkpoint_dir is None:
            checkpoint_dir = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="trainer-", dir=out_dir)))
        args = training_arguments(task, checkpoint_dir, processes, choices)
        trainer = _trainer(task, (model, adapter), tokenizer, args, (rows, collator), log, out_dir, callbacks)
        model = trainer.model  # the trainer's, wrapped in the adapter where it applies it
        trainable, total = _announce(log, task, method, model, len(train_rows), choices)
        result, seconds, kernels = _fit(trainer, task.precision, resume)
    figures = {
        "train_seconds": round(seconds, 2),
        "train_samples_per_second": round(result.metrics.get("train_samples_per_second", 0.0), 2),
        "train_loss": round(result.training_loss, 4),
        **_trainer_state(trainer.state),
        "resumed_from_step": resume[0] if resume else None,
        "world_size": processes,
        "training_rows": len(train_rows),
        **packed,
        **_model_figures(model, trainable, total),
        **task.precision.metadata(),
        **compute.metadata(*choices),
        **kernels,
        **_method_figures(model, recipe, method),
    }
    if trainer.is_world_process_zero():
        _save(trainer, model, tokenizer, recipe, out_dir, figures)
    return figures


def _fit(trainer, numerics, resume: tuple[int, Path] | None):
    """The Trainer's result, its seconds, and how the run computed where the precision makes a
    difference: a LoRA base's frozen layers held in 16 bits (:meth:`Precision.for_training`), and 16-bit
    attention on a CPU as two products where the fused kernel is slow (:mod:`finetune_assets.models.attention`);
    dropout's masks on a CPU drawn 16 bits at a time (:mod:`finetune_assets.models.dropout`); and
    whether a causal LM's logits were computed at its targets only
    (:mod:`finetune_assets.tasks.causal_lm.answer_logits`). A failure carries the step it reached, for the failure record (:mod:`finetune_assets.training.failure`)."""
    model = trainer.model
    kernels = {
        "frozen_layers_16bit": numerics.for_training(model),
        "logits_at_targets_only": getattr(trainer.data_collator, "logits_at_targets_only", False),
    }
    started = time.monotonic()
    on_cpu = numerics.device == "cpu"
    with (
        attention.product_attention(model, enabled=on_cpu and numerics.name != "fp32") as products,
        dropout.cpu_dropout(model, enabled=on_cpu and not trainer.args.torch_compile) as switched,
    ):
        try:
            result = trainer.train(resume_from_checkpoint=str(resume[1]) if resume else None)
        except Exception as error:
            error.training_step = trainer.state.global_step
            raise
    kernels["attention"] = attention.NAME if products else model.config._attn_implementation
    kernels["dropout_layers_16bit_draws"] = switched
    return result, time.monotonic() - started, kernels


def _packed(task: TaskFamily, rows: tuple[Dataset, Dataset], tokenizer, model, processes: int, log):
    """The rows the Trainer gets, the collator that replaces the task's (None: the task's own), and
    the packing figures: rows packed where ``training.packing`` asks (:mod:`.packing`)."""
    if not task.recipe.training.packing:
        return rows, None, {"packing": False}
    from finetune_assets.tasks.causal_lm import packing

    packed = packing.pack_for_training(rows, tokenizer, model, task.recipe.training, processes)
    figures = packed.figures
    log.info(
        f"packing: {len(rows[0])} training rows into {figures['packed_rows']} rows of at most "
        f"{task.recipe.training.max_length} tokens; padding share {figures['padding_share_unpacked']:.1%} "
        f"unpacked, {figures['padding_share_packed']:.1%} packed"
    )
    return packed.rows, packed.collator, {"packing": True, **figures}


def compute_choices(task: TaskFamily, rows: int, processes: int) -> tuple[compute.Choice, compute.Choice]:
    """The AdamW kernel and the ``torch.compile`` choice for a run of ``rows`` training rows (packed
    rows where packing applies), its steps counted as each process takes them."""
    spec = task.recipe.training
    steps = compute.optimizer_steps(
        rows, spec.batch_size // processes * processes, spec.gradient_accumulation_steps, spec.epochs
    )
    device = task.precision.device
    return compute.optimizer(device), compute.compile_model(spec.compile, device, steps)


def _announce(log, task: TaskFamily, method: str, model, rows: int, choices) -> tuple[int, int]:
    """Say what trains where, and how; return the trainable and total parameter counts."""
    trainable, total = methods.parameter_counts(model)
    processes = command.world_size()
    optim, compiled = choices
    log.info(
        f"{method}: {trainable:,} of {total:,} parameters trainable on {device_name()}"
        f"{f' x {processes} processes' if processes > 1 else ''}, {rows} training rows, {task.precision}; "
        f"{optim.value} ({optim.reason}); torch.compile {'on' if compiled.value else 'off'} ({compiled.reason})"
    )
    return trainable, total


def _rows(task: TaskFamily, splits_dir: Path) -> tuple[Dataset, Dataset]:
    """The training and validation rows, each cut to the recipe's ``max_*_samples``."""
    spec = task.recipe.training
    splits = load_from_disk(str(splits_dir))
    return take(splits["train"], spec.max_train_samples, spec.seed), take(
        splits["validation"], spec.max_eval_samples, spec.seed
    )


def _trainer(task: TaskFamily, model, tokenizer, args, rows, log, out_dir: Path, callbacks=()):
    """The task's Trainer with progress in the run log, early stopping where the recipe asks, the
    trackers' event files kept with the model, and the launcher's own ``callbacks``. ``model``: the
    model and the LoRA config the trainer applies itself (None where the model comes wrapped, or
    trains in full); ``rows``: (train, validation) and the collator that replaces the task's (None:
    the task's own)."""
    model, adapter = model
    rows, collator = rows
    options = task.trainer_options(tokenizer, model, rows, adapter)
    if collator is not None:
        options["data_collator"] = collator
    callbacks = [RunLogProgress(log), *callbacks]
    patience = task.recipe.training.early_stopping_patience
    if patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    with tracking.event_files_into(out_dir, task.recipe):
        trainer = task.trainer_class()(
            model=model,
            args=args,
            processing_class=tokenizer,
            callbacks=callbacks,
            **options,
        )
    trainer.remove_callback(PrinterCallback)  # it prints each log as a raw dict; RunLogProgress logs them
    return trainer


def _save(trainer, model, tokenizer, recipe: Recipe, out_dir: Path, figures: dict) -> None:
    """What the training leaves in ``out_dir``: weights (or adapter), tokenizer, log history, the recipe
    as trained, the loss curve and the figures."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    save_resolved(recipe, out_dir)
    plots.loss_curve(trainer.state.log_history, out_dir / "loss_curve.png")
    plots.reward_curve(trainer.state.log_history, out_dir / "reward_curve.png")
    (out_dir / "training_figures.json").write_text(json.dumps(figures, indent=2))


def training_arguments(task: TaskFamily, checkpoint_dir: Path, processes: int, choices=None):
    """The Trainer's arguments from the recipe's ``training`` section, the resolved precision, the
    number of processes (the recipe's batch is one optimizer step's, split over the processes) and
    the compute ``choices`` (:func:`compute_choices`; None: the device's AdamW, no compile)."""
    spec = task.recipe.training
    optim, compiled = choices or (compute.optimizer(task.precision.device), compute.Choice(False, ""))
    early = bool(spec.early_stopping_patience)  # keeps the best checkpoint: validate at every one
    save_steps = spec.save_steps if spec.save_steps < 1 else int(spec.save_steps)
    common = dict(
        output_dir=str(checkpoint_dir),
        num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size // processes,
        per_device_eval_batch_size=max(1, spec.eval_batch_size // processes),
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        activation_checkpointing=spec.gradient_checkpointing,
        weight_decay=spec.weight_decay,
        warmup_steps=spec.warmup,
        eval_strategy="steps" if early else "epoch",
        eval_steps=save_steps if early else None,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=spec.save_total_limit,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss",
        logging_steps=spec.logging_steps,
        logging_first_step=True,  # the loss before training moved the weights: what loss_decreased compares with
        train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
        seed=spec.seed,
        **task.precision.trainer_arguments(),
        ddp_backend=("nccl" if task.precision.device == "cuda" else "gloo") if processes > 1 else None,
        report_to=list(spec.report_to),  # experiment trackers (training/tracking.py)
        disable_tqdm=True,
        optim=optim.value,
        torch_compile=compiled.value,
    )
    return task.training_arguments_class()(**{**common, **task.extra_training_arguments()})


def _trainer_state(state) -> dict:
    """What the Trainer's state says about the run: its last validation loss, epochs and steps."""
    eval_losses = [row["eval_loss"] for row in state.log_history if "eval_loss" in row]
    return {
        "final_validation_loss": round(eval_losses[-1], 4) if eval_losses else None,
        "epochs_run": round(state.epoch or 0, 3),
        "optimizer_steps": state.global_step,
        "checkpoint_every_steps": state.save_steps,
    }


def _model_figures(model, trainable: int, total: int) -> dict:
    """The trained model's size and where it ran: what a run needs of a machine."""
    return {
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_fraction": round(trainable / total, 6),
        "lora_target_modules": methods.lora_targets(model),
        "device": device_name(),
        **peak_memory(),
    }  # rank 0's process: the model, optimizer state and activations of one device


def _method_figures(model, recipe: Recipe, method: str) -> dict:
    """The method trained (a QLoRA recipe's fallback said) and, for QLoRA, the proof that the base
    trained in 4 bits, and where: its ``Linear4bit`` layers, the device they ran on and the dtype
    they were computed in (``None`` for the other methods)."""
    trained = {
        "method_trained": method,
        "qlora_cpu_fallback": method != recipe.method if recipe.method == "qlora" else None,
    }
    if method != "qlora":
        return {**trained, "four_bit_layers": None, "four_bit_device": None, "four_bit_compute_dtype": None}
    return {
        **trained,
        "four_bit_layers": quantization.four_bit_layers(model),
        "four_bit_device": device_name(),
        "four_bit_compute_dtype": quantization.compute_dtype(recipe),
    }


def _resume_point(folder: Path | None, fingerprint: str, processes: int, log) -> tuple[int, Path] | None:
    """The newest complete checkpoint of this training in ``folder``, if any; refuses a folder
    holding another training's checkpoints (see :mod:`finetune_assets.training.checkpoints`)."""
    if folder is None or not fingerprint:
        return None
    checkpoints.claim(folder, fingerprint, processes)
    newest = checkpoints.newest_complete(folder)
    if command.rank() == 0:
        for path in checkpoints.drop_incomplete(folder):
            log.warning(f"removed {path.name}: cut short before it was complete")
        checkpoints.mark(folder, fingerprint, processes)
    if newest:
        log.info(
            f"resuming from {newest[1]} (step {newest[0]}): weights, optimizer, scheduler, RNG and "
            "data position as they were"
        )
    return newest
