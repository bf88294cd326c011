"""How many tokens a base model reads in one sequence, and ``training.max_length`` held to it.

A model with a table of learned positions (BERT, RoBERTa, GPT-2, Llama's configured context) has no
position past the table's end: a longer input fails in the first forward pass, deep inside
training, after the data stages all passed. :func:`require_max_length_fits` refuses such a recipe in
``tokenized_splits`` instead, naming both numbers.

Refused, not clamped: the recipe asks for inputs the model cannot read, and a silent (or merely
WARNed) clamp would train on texts cut shorter than the recipe says, under the recipe's fingerprint
and ``max_length`` metadata, while the truncation check measured the cut at the wrong length. The
fix is one edit the user should make knowingly: lower ``training.max_length``, or choose a model
with a longer context.

The limit comes from the model's config, never from its tokenizer's ``model_max_length``: an
export of this project stores the recipe's own ``max_length`` there (so that its pipeline cuts as
training did), which is no limit of the model a later recipe fine-tunes further.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune_assets.errors import RecipeError

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe

POSITION_KEYS = ("max_position_embeddings", "n_positions")  # BERT, Llama, BART...; GPT-2
# Families whose positions start after the padding index (RoBERTa's table of 514 reads 512 tokens).
OFFSET_BY_PADDING = {"roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "data2vec-text", "xmod"}


def position_limit(location: str, trust_remote_code: bool = False) -> int | None:
    """The most tokens the model at ``location`` reads in one sequence; ``None`` for a model
    without a table of positions (T5's relative positions read any length)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code).get_text_config()
    table = next((value for key in POSITION_KEYS if isinstance(value := getattr(config, key, None), int)), None)
    if table is None:
        return None
    if config.model_type in OFFSET_BY_PADDING:
        return table - (config.pad_token_id or 0) - 1
    return table


def require_max_length_fits(recipe: Recipe, location: str) -> None:
    """A :class:`RecipeError` when ``training.max_length`` exceeds the positions of the base model
    at ``location`` (module docstring: why refused rather than clamped)."""
    limit = position_limit(location, recipe.trust_remote_code)
    asked = recipe.training.max_length
    if limit is not None and asked > limit:
        raise RecipeError(
            f"recipe {recipe.name}: training.max_length is {asked}, but the base model {recipe.base_model} "
            f"reads at most {limit} tokens (its position limit); set training.max_length to {limit} or less, "
            "or choose a model with a longer context"
        )
