"""Recipes: the schema of a recipe file, its loader, and the recipe files shipped with the project.

A recipe is one YAML file (``*.yaml``) declaring one fine-tuning job; the file name is the recipe
and asset-group name. This folder holds the schema (:mod:`.schema`), the loader and the rules for
which folders are read (:mod:`.loading`), a recipe's ``sweep:`` and its variants (:mod:`.sweep`),
``base_model: recipe:<name>`` checked across the loaded recipes (:mod:`.chaining`), and the shipped
recipes themselves. It knows nothing
about Dagster, training or data: it only says what a job is.
"""

from finetune_assets.recipes.loading import SHIPPED_DIR, load_recipe, load_recipes, recipe_folders, save_resolved, scan
from finetune_assets.recipes.schema import Recipe

__all__ = ["SHIPPED_DIR", "Recipe", "load_recipe", "load_recipes", "recipe_folders", "save_resolved", "scan"]
