"""The recipe's ``generation:`` settings applied to a model's ``generation_config``.

One function for evaluation and export alike, so the report's figures come from exactly the
decoding the exported model will use. Settings that do not apply (sampling knobs without
``do_sample``, ``length_penalty`` without beams) are left out: transformers refuses to save a
generation config that sets them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformers import GenerationConfig

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe


def generation_settings(recipe: Recipe) -> dict:
    spec = recipe.generation
    settings = {
        "max_new_tokens": spec.max_new_tokens,
        "num_beams": spec.num_beams,
        "do_sample": spec.do_sample,
        "no_repeat_ngram_size": spec.no_repeat_ngram_size,
    }
    if spec.do_sample:
        settings.update(temperature=spec.temperature, top_p=spec.top_p)
    if spec.num_beams > 1:
        settings["length_penalty"] = spec.length_penalty
    return settings


def apply_generation_settings(model, recipe: Recipe) -> GenerationConfig:
    """Update ``model.generation_config`` in place (token ids set by the model stay) and return it."""
    model.generation_config.update(**generation_settings(recipe))
    return model.generation_config


def generation_batch_size(recipe: Recipe) -> int:
    """Prompts decoded together: ``generation.batch_size``, else ``training.eval_batch_size``. Decoding
    reads every weight once per step whatever the batch, so wider batches make more tokens per read;
    scoring (a forward pass over whole rows) keeps the narrower ``eval_batch_size``."""
    return recipe.generation.batch_size or recipe.training.eval_batch_size
