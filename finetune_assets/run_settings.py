"""Per-run overrides, set in Dagster run config without touching the recipe file.

CI uses them to train on a small slice; ``force`` ignores cached artifacts for one run. Overridden
values change the fingerprints like any recipe edit, so cached artifacts are never confused.
"""

from __future__ import annotations

from dagster import ConfigurableResource

from finetune_assets.recipe import Recipe


class RunSettings(ConfigurableResource):
    force: bool = False
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    epochs: float | None = None

    def apply(self, recipe: Recipe) -> Recipe:
        """The recipe as this run sees it."""
        training = {key: getattr(self, key) for key in ("max_train_samples", "max_eval_samples", "epochs")
                    if getattr(self, key) is not None}
        if not training:
            return recipe
        return recipe.model_copy(update={"training": recipe.training.model_copy(update=training)})

    def forced(self, recipe: Recipe) -> bool:
        return self.force or recipe.force_recompute
