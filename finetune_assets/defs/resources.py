"""The Dagster resources every recipe's assets use: where artifacts live, how references are
stored between assets, and the per-run settings shown in the launchpad.

Each is a ``ConfigurableResource`` (or IO manager) with a local implementation; a project using
finetune_assets as a library passes its own instances to
:func:`finetune_assets.defs.build_definitions` (another artifacts root, say) without touching
the pipeline code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext
from pydantic import Field, ValidationError

from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.artifacts import ArtifactRef, default_artifacts_root
from finetune_assets.pipeline.atomic import write_text
from finetune_assets.recipes import Recipe
from finetune_assets.recipes.schema import ComputeSpec


class ArtifactStore(ConfigurableResource):
    """Where the artifacts live: one folder per recipe, asset and fingerprint under `root`."""

    root: str = Field(
        "", description="The artifacts root; empty: $FINETUNE_ARTIFACTS_DIR, else $DAGSTER_HOME/artifacts."
    )

    @property
    def base(self) -> Path:
        return Path(self.root) if self.root else default_artifacts_root()


class ArtifactRefIOManager(ConfigurableIOManager):
    """Passes a small JSON reference (path, fingerprint, lineage) from each asset to the next, never a
    pickled model: `<root>/refs/<recipe>/<asset>.json`, and for a partition (a sweep variant)
    `<root>/refs/<recipe>/<asset>/<partition key, %-quoted>.json`."""

    root: str = Field("", description="The artifacts root, as for the `artifacts` resource.")

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
                "materialized with this artifacts root; materialize it first"
            )
        return ArtifactRef.from_json(source.read_text())


class RunSettings(ConfigurableResource):
    """Settings for one run, without touching the recipe file: the launchpad shows each with its
    default, and `dagster asset materialize -c run_config.yaml` takes the same keys.

    - `max_train_samples`, `max_eval_samples`, `epochs` change what is trained (a *smoke run*, CI's
      small slice). They change the fingerprints like a recipe edit, so nothing cached is confused; the
      run is tagged `finetune_assets/run_overrides` and its export is not promoted unless `promote`.
    - `force` recomputes every asset of the run, `launcher` and `processes` move its training (say
      `torchrun` with 4 processes on a 4-GPU machine). None of them changes what is trained, so the
      fingerprints stay; a run using them is tagged `finetune_assets/run_settings`.

    A value of 0 (or `recipe`) leaves the recipe's setting as it is.
    """

    force: bool = Field(
        False,
        description="Ignore cached artifacts: recompute every asset of this run "
        "(a training starts from scratch instead of resuming).",
    )
    max_train_samples: int = Field(
        0,
        ge=0,
        description="Train on at most this many rows (a seeded sample); 0: as the recipe says. Makes this a smoke run.",
    )
    max_eval_samples: int = Field(
        0,
        ge=0,
        description="Validate and test on at most this many rows; 0: as the recipe says. Makes this a smoke run.",
    )
    epochs: float = Field(
        0.0, ge=0, description="Passes over the training rows; 0: as the recipe says. Makes this a smoke run."
    )
    promote: bool = Field(
        False,
        description="Let a smoke run's export replace the champion when it wins "
        "(by default a run with overrides never promotes).",
    )
    launcher: Literal["recipe", "local", "torchrun", "accelerate"] = Field(
        "recipe",
        description="Where this run trains: local (one process), torchrun (data parallel over "
        "`processes`), accelerate (the recipe's compute.accelerate_config); recipe: as compute.launcher says.",
    )
    processes: int = Field(
        0, ge=0, description="torchrun: training processes, one per device; 0: as compute.processes says."
    )

    def overrides(self) -> dict:
        """The training settings this run changes, by name."""
        return {
            key: getattr(self, key) for key in ("max_train_samples", "max_eval_samples", "epochs") if getattr(self, key)
        }

    def compute(self) -> dict:
        """The ``compute`` settings this run changes: where it trains, not what."""
        return {
            **({"launcher": self.launcher} if self.launcher != "recipe" else {}),
            **({"processes": self.processes} if self.processes else {}),
        }

    def describe_settings(self) -> str:
        """The settings this run sets that do not change what is trained (``force=True, launcher=torchrun``)."""
        chosen = {**self.compute(), **{key: True for key in ("force", "promote") if getattr(self, key)}}
        return ", ".join(f"{key}={value}" for key, value in sorted(chosen.items()))

    def apply(self, recipe: Recipe) -> Recipe:
        """The recipe as this run sees it (the ``compute`` overrides validated like the recipe's)."""
        update = {"training": recipe.training.model_copy(update=self.overrides())} if self.overrides() else {}
        compute = self.compute()
        if compute:
            try:
                update["compute"] = ComputeSpec.model_validate({**recipe.compute.model_dump(), **compute})
            except ValidationError as exc:
                raise RecipeError(
                    f"run config resources.run_settings ({compute}) for recipe {recipe.name}: "
                    + "; ".join(error["msg"] for error in exc.errors())
                ) from None
        return recipe.model_copy(update=update) if update else recipe

    def forced(self, recipe: Recipe) -> bool:
        return self.force or recipe.force_recompute


class MlflowSettings(ConfigurableResource):
    """Where the MLflow Model Registry is, for recipes whose `publish:` names `mlflow` and do not name a
    server themselves (their `publish.mlflow.tracking_uri` wins). Empty: `MLFLOW_TRACKING_URI`."""

    tracking_uri: str = Field(
        "", description="The MLflow tracking server, e.g. http://mlflow:5000; empty: $MLFLOW_TRACKING_URI."
    )
