"""Full fine-tuning and LoRA: the only place that knows the difference.

``full`` trains every weight. ``lora`` wraps the model with peft adapters (target modules from
the recipe, else peft's per-architecture defaults) and trains only those plus the task head;
checkpoints then hold the adapter alone, and :func:`load_trained` merges it back for use.
"""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

from finetune_assets.recipe import Recipe
from finetune_assets.tasks.base import TaskFamily


# Attention projections for architectures peft has no default for.
EXTRA_DEFAULT_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "encoder-decoder": ["query", "value"],  # BERT-style encoder and decoder
}


class MethodError(ValueError):
    """A method setting that cannot work with this model or machine."""


def default_targets(model_type: str) -> list[str]:
    targets = PEFT_DEFAULTS.get(model_type) or EXTRA_DEFAULT_TARGETS.get(model_type)
    if not targets:
        raise MethodError(f"no default LoRA target modules for model type '{model_type}'; set "
                          "lora.target_modules in the recipe (e.g. the attention projections' names)")
    return list(targets)


def prepare(model, recipe: Recipe, task: TaskFamily):
    """Return the model to hand to the Trainer for ``recipe.method``."""
    if recipe.method == "full":
        return model
    spec = recipe.lora
    config = LoraConfig(task_type=task.peft_task_type(), r=spec.r, lora_alpha=spec.alpha,
                        lora_dropout=spec.dropout,
                        target_modules=spec.target_modules or default_targets(model.config.model_type))
    return get_peft_model(model, config)


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def lora_targets(model) -> list[str]:
    """The module names peft actually adapted (resolved defaults included)."""
    config = getattr(model, "peft_config", {}).get("default")
    return sorted(config.target_modules) if config else []


def load_trained(checkpoint: Path, base_location: str, recipe: Recipe, task: TaskFamily):
    """The fine-tuned model as plain transformers weights (LoRA adapters merged in)."""
    if recipe.method == "full":
        return task.load_model(str(checkpoint), recipe)
    base = task.load_model(base_location, recipe)
    return PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload()
