"""The MLflow Model Registry target: each champion a version of one registered model, the alias
``champion`` on the one users get.

The export folder is logged as it is, as a ``pyfunc`` model (:mod:`.mlflow_pyfunc`, which says
why not the ``transformers`` flavor), so ``mlflow.pyfunc.load_model("models:/<name>@champion")``
gives back the export's working pipeline behind ``predict``. The version is tagged with :func:`~.champion_tags.champion_tags`; a champion is
found again by its fingerprint tag, so a re-run, or a gate that kept its champion, creates no new
version: it only makes sure the alias is on it. The tracking URI: the recipe's
``publish.mlflow.tracking_uri``, else the ``mlflow`` resource's, else ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

from finetune_assets.errors import PublishError
from finetune_assets.publishing.champion_tags import FINGERPRINT, champion_tags
from finetune_assets.publishing.targets import Champion, Published
from finetune_assets.recipes import Recipe
from finetune_assets.tasks import get_task

ALIAS = "champion"
PINNED = ("transformers", "torch", "safetensors", "tokenizers")  # what the logged model says it needs


def tracking_uri(recipe: Recipe, configured: str = "") -> str:
    """Where the registry is: the recipe's, the resource's (``configured``), or ``MLFLOW_TRACKING_URI``."""
    spec = recipe.publish.mlflow
    uri = (spec.tracking_uri if spec else None) or configured or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise PublishError(
            f"recipe {recipe.name}: publish.mlflow names no tracking server: set publish.mlflow.tracking_uri, "
            "the mlflow resource's tracking_uri, or MLFLOW_TRACKING_URI"
        )
    return uri


class MlflowRegistry:
    """A registered model on one tracking server."""

    name = "mlflow"

    def __init__(self, address: str, model_name: str):
        self.address, self.model_name = address, model_name

    @classmethod
    def of(cls, recipe: Recipe, configured_uri: str = "") -> MlflowRegistry:
        spec = recipe.publish.mlflow
        return cls(tracking_uri(recipe, configured_uri), (spec and spec.model_name) or recipe.name)

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.address, registry_uri=self.address)

    def version_of(self, fingerprint: str):
        """The registered version tagged with ``fingerprint`` (the newest if several), or None."""
        found = [
            version
            for version in self.client().search_model_versions(f"name = '{self.model_name}'")
            if version.tags.get(FINGERPRINT) == fingerprint
        ]
        return max(found, key=lambda version: int(version.version)) if found else None

    def point_alias(self, version: str) -> None:
        """Move the alias ``champion`` to ``version``."""
        self.client().set_registered_model_alias(self.model_name, ALIAS, str(version))

    def find(self, champion: Champion) -> Published | None:
        """The champion's version, with the alias made sure to be on it; None if never registered."""
        version = self.version_of(champion.fingerprint)
        if version is None:
            return None
        self.point_alias(version.version)
        return self._published(champion, version.version, version.run_id, created=False)

    def publish(self, champion: Champion) -> Published:
        """Log the export as a new version of the registered model, tag it, move the alias to it. Through
        an ``MlflowClient`` of this address only: MLflow's process-wide tracking URI is left alone."""
        tags, client = champion_tags(champion), self.client()
        experiment = _experiment(client, f"finetune_assets/{champion.recipe.name}")
        run = client.create_run(experiment, tags=tags, run_name=f"champion {champion.fingerprint}")
        with tempfile.TemporaryDirectory() as scratch:
            saved = Path(scratch) / "model"
            _save(champion, saved)
            client.log_artifacts(run.info.run_id, str(saved), "model")
        client.set_terminated(run.info.run_id)
        if not client.search_registered_models(f"name = '{self.model_name}'"):
            client.create_registered_model(self.model_name)
        made = client.create_model_version(
            self.model_name, f"{run.info.artifact_uri}/model", run.info.run_id, tags=tags
        )
        self.point_alias(made.version)
        return self._published(champion, made.version, run.info.run_id, created=True)

    def _published(self, champion: Champion, version: str, run_id: str, created: bool) -> Published:
        return Published(
            self.name,
            self.address,
            champion.fingerprint,
            str(version),
            f"models:/{self.model_name}@{ALIAS}",
            created,
            {"model_name": self.model_name, "version_uri": f"models:/{self.model_name}/{version}", "run_id": run_id},
        )


def _experiment(client, name: str) -> str:
    """The id of the experiment ``name``, created when missing."""
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def _save(champion: Champion, folder: Path) -> None:
    """The export as a pyfunc model in ``folder`` (the export's files copied in as its artifact)."""
    import mlflow.pyfunc

    from finetune_assets.publishing.mlflow_pyfunc import ExportPipeline

    mlflow.pyfunc.save_model(
        str(folder),
        python_model=ExportPipeline(),
        artifacts={"export": str(champion.folder)},
        model_config={"pipeline_task": get_task(champion.recipe).pipeline_task},
        signature=_signature(champion.recipe),
        pip_requirements=[f"{name}=={importlib.metadata.version(name)}" for name in PINNED],
    )


def _signature(recipe: Recipe):
    """For a model that generates, the decoding settings ``predict`` accepts as ``params`` (defaults: the
    recipe's ``generation:``, which the export's ``generation_config.json`` holds too); MLflow drops
    params a signature does not declare. None for a classifier."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    from finetune_assets.inference.generation import generation_settings

    if get_task(recipe).pipeline_task == "text-classification":
        return None
    settings = {**generation_settings(recipe), "temperature": recipe.generation.temperature}
    settings.setdefault("top_p", recipe.generation.top_p)
    kinds = {bool: "boolean", int: "long", float: "double"}
    return ModelSignature(params=ParamSchema([ParamSpec(k, kinds[type(v)], v) for k, v in settings.items()]))
