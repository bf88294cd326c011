"""Full fine-tuning, LoRA and QLoRA: the only place that knows the difference.

``full`` trains every weight. ``lora`` wraps the model with peft adapters (target modules from
the recipe, else peft's per-architecture defaults) and trains only those plus the task head;
checkpoints then hold the adapter alone, and :func:`load_trained` merges it back for use.
``qlora`` is LoRA on a base model loaded in 4 bits (bitsandbytes NF4 by default, settings in the
recipe's ``quantization``) on the device that trains: a CUDA GPU, or the CPU, wherever
bitsandbytes trains 4-bit weights (:mod:`finetune_assets.models.quantization` asks it with a real
step). Where it cannot, the run fails before any data is read (:func:`preflight`), or with
``quantization.cpu_fallback: true`` trains plain LoRA and says so. Merging always goes into an
unquantized copy of the base, never into 4-bit weights.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

from finetune_assets.errors import MethodError
from finetune_assets.models import quantization
from finetune_assets.recipes import Recipe
from finetune_assets.tasks.base import TaskFamily

# Attention projections for architectures peft has no default for.
EXTRA_DEFAULT_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "encoder-decoder": ["query", "value"],  # BERT-style encoder and decoder
}


def trained_method(recipe: Recipe) -> str:
    """The method this machine will train: the recipe's, or ``lora`` for a ``qlora`` recipe whose
    4-bit weights do not train here and whose recipe allows the fallback. Raises :class:`MethodError`
    otherwise."""
    if recipe.method != "qlora":
        return recipe.method
    support = quantization.four_bit_support(recipe)
    if support.runs:
        return "qlora"
    if recipe.quantization.cpu_fallback:
        return "lora"
    raise MethodError(
        f"{recipe.source_file.name}: method qlora needs bitsandbytes 4-bit weights on the training device "
        f"({support.device}), and they do not train here: {support.reason}. Install a bitsandbytes that "
        "supports 4-bit on this device, set method: lora, or set quantization.cpu_fallback: true to train "
        "plain LoRA here instead."
    )


def preflight(recipe: Recipe, log) -> str:
    """Check the method against this machine before any data is read; log where 4-bit weights train,
    or the fallback."""
    method = trained_method(recipe)
    if recipe.method != "qlora":
        return method
    support = quantization.four_bit_support(recipe)
    if method != recipe.method:
        log.warning(
            f"{recipe.name}: 4-bit weights do not train on {support.device} here ({support.reason}), so "
            "method qlora falls back to plain LoRA (quantization.cpu_fallback: true); the 4-bit base is not used"
        )
    else:
        log.info(f"{recipe.name}: method qlora trains on a 4-bit base on {support.device} ({support.reason})")
    return method


def load_base(task: TaskFamily, method: str):
    """The recipe's base model to train: as is, or for ``qlora`` in 4 bits on the training device and
    ready for k-bit training."""
    if method != "qlora":
        return task.load_model(task.base_location)
    from transformers import BitsAndBytesConfig

    spec = task.recipe.quantization
    dtype = getattr(torch, quantization.compute_dtype(task.recipe))
    quantization_config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec.quant_type,
        bnb_4bit_use_double_quant=spec.double_quant,
        bnb_4bit_compute_dtype=dtype,
    )
    device = 0 if quantization.training_device() == "cuda" else "cpu"
    model = task.load_model(
        task.base_location, quantization_config=quantization_config, dtype=dtype, device_map={"": device}
    )
    quantization.keep_training_layout(model)
    # Norms to float32, input gradients on; the Trainer turns on activation checkpointing itself.
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def default_targets(model_type: str) -> list[str]:
    targets = PEFT_DEFAULTS.get(model_type) or EXTRA_DEFAULT_TARGETS.get(model_type)
    if not targets:
        raise MethodError(
            f"no default LoRA target modules for model type '{model_type}'; set "
            "lora.target_modules in the recipe (e.g. the attention projections' names)"
        )
    return list(targets)


def adapter_config(model, task: TaskFamily) -> LoraConfig | None:
    """The LoRA adapter the recipe's ``method`` puts on ``model`` (None for full fine-tuning)."""
    if task.recipe.method == "full":
        return None
    spec = task.recipe.lora
    return LoraConfig(
        task_type=task.peft_task_type(model),
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules or default_targets(model.config.model_type),
    )


def prepare(model, task: TaskFamily):
    """Return the model to hand to the Trainer for the recipe's ``method``."""
    config = adapter_config(model, task)
    return model if config is None else get_peft_model(model, config)


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters; peft counts packed 4-bit weights at their real size."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def lora_targets(model) -> list[str]:
    """The module names peft actually adapted (resolved defaults included)."""
    config = getattr(model, "peft_config", {}).get("default")
    return sorted(config.target_modules) if config else []


def load_trained(checkpoint: Path, task: TaskFamily):
    """The fine-tuned model as plain transformers weights (LoRA adapters merged in)."""
    if task.recipe.method == "full":
        return task.load_model(str(checkpoint))
    if not (checkpoint / "adapter_model.safetensors").exists():  # peft would fall back to a pickle file
        raise MethodError(f"{checkpoint}: no adapter_model.safetensors; this project loads safetensors only")
    base = task.load_model(task.base_location)
    return PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload()


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def save_adapter(checkpoint: Path, target: Path) -> None:
    """Copy a LoRA checkpoint's adapter into ``target``, for users who load it onto the base with
    peft instead of taking the merged model."""
    target.mkdir()
    for name in ADAPTER_FILES:
        shutil.copy2(checkpoint / name, target / name)
