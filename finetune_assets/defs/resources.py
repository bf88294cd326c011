"""The Dagster resources every recipe's assets use: where artifacts live, how references are
stored between assets, and the per-run settings shown in the launchpad.

Each is a ``ConfigurableResource`` (or IO manager) with a local implementation; a project using
finetune_assets as a library passes its own instances to
:func:`finetune_assets.defs.build_definitions` (another artifacts root, say) without touching
the pipeline code.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext
from pydantic import ValidationError

from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.artifacts import ArtifactRef, artifact_folder, default_artifacts_root
from finetune_assets.pipeline.atomic import write_text
from finetune_assets.recipes import Recipe
from finetune_assets.recipes.schema import ComputeSpec


class ArtifactStore(ConfigurableResource):
    """The artifacts root as a Dagster resource; empty ``root`` means :func:`default_artifacts_root`."""

    root: str = ""

    @property
    def base(self) -> Path:
        return Path(self.root) if self.root else default_artifacts_root()

    def folder(self, recipe: str, asset: str, fingerprint: str) -> Path:
        return artifact_folder(self.base, recipe, asset, fingerprint)


class ArtifactRefIOManager(ConfigurableIOManager):
    """Stores each asset's :class:`ArtifactRef` as a JSON file under ``<root>/refs``:
    ``refs/<recipe>/<asset>.json``, and for a partition (a sweep variant)
    ``refs/<recipe>/<asset>/<partition key, %-quoted>.json``."""

    root: str = ""

    def _ref_file(self, context: InputContext | OutputContext) -> Path:
        *folders, name = context.asset_key.path
        if context.has_asset_partitions:
            folders, name = [*folders, name], quote(context.asset_partition_key, safe="=,+")
        return ArtifactStore(root=self.root).base.joinpath("refs", *folders, f"{name}.json")

    def handle_output(self, context: OutputContext, obj: ArtifactRef) -> None:
        write_text(self._ref_file(context), obj.to_json())

    def load_input(self, context: InputContext) -> ArtifactRef:
        source = self._ref_file(context)
        if not source.exists():
            raise FileNotFoundError(
                f"{source}: upstream asset {context.asset_key.to_user_string()} has not been "
                "materialized with this artifacts root; materialize it first")
        return ArtifactRef.from_json(source.read_text())


class RunSettings(ConfigurableResource):
    """Per-run overrides, set in Dagster run config without touching the recipe file.

    CI uses them to train on a small slice; ``force`` ignores cached artifacts for one run.
    Overridden training values change the fingerprints like any recipe edit, so cached artifacts are
    never confused. A run with overrides is tagged ``finetune_assets/run_overrides`` and its export
    is not promoted unless ``promote`` is true: a smoke run never replaces the production model.
    ``launcher`` and ``processes`` move one run's training (``torchrun`` with 4 processes on a
    4-GPU machine, say); where a model trains changes neither its fingerprint nor its promotion.
    """

    force: bool = False
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    epochs: float | None = None
    promote: bool = False  # let a run with overrides promote its export
    launcher: str | None = None  # local | torchrun | accelerate: where this run trains
    processes: int | None = None

    def overrides(self) -> dict:
        """The training settings this run changes, by name."""
        return {key: getattr(self, key) for key in ("max_train_samples", "max_eval_samples", "epochs")
                if getattr(self, key) is not None}

    def apply(self, recipe: Recipe) -> Recipe:
        """The recipe as this run sees it (the ``compute`` overrides validated like the recipe's)."""
        update = {"training": recipe.training.model_copy(update=self.overrides())} if self.overrides() else {}
        compute = {key: getattr(self, key) for key in ("launcher", "processes") if getattr(self, key) is not None}
        if compute:
            try:
                update["compute"] = ComputeSpec.model_validate({**recipe.compute.model_dump(), **compute})
            except ValidationError as exc:
                raise RecipeError(f"run config resources.run_settings ({compute}) for recipe {recipe.name}: "
                                  + "; ".join(error["msg"] for error in exc.errors())) from None
        return recipe.model_copy(update=update) if update else recipe

    def forced(self, recipe: Recipe) -> bool:
        return self.force or recipe.force_recompute
