"""Full fine-tuning and LoRA: the only place that knows the difference.

``full`` trains every weight. ``lora`` wraps the model with peft adapters (target modules from
the recipe, else peft's per-architecture defaults) and trains only those plus the task head;
checkpoints then hold the adapter alone, and :func:`load_trained` merges it back for use.
"""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model

from finetune_assets.recipe import Recipe
from finetune_assets.tasks.base import TaskFamily


def prepare(model, recipe: Recipe, task: TaskFamily):
    """Return the model to hand to the Trainer for ``recipe.method``."""
    if recipe.method == "full":
        return model
    spec = recipe.lora
    config = LoraConfig(task_type=task.peft_task_type(), r=spec.r, lora_alpha=spec.alpha,
                        lora_dropout=spec.dropout, target_modules=spec.target_modules)
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
