"""Where the training process runs: the ``training`` resource, a Dagster Pipes client behind one
small interface.

``finetuned_model`` builds the training command (:func:`finetune_assets.training.command.training_command`)
and asks this resource for a :data:`~finetune_assets.pipeline.processes.StartProcess`: ``LocalTraining`` (the default) runs it on this machine with
``PipesSubprocessClient``; ``KubernetesTraining`` runs it in a pod with dagster-k8s's
``PipesK8sClient`` (``pip install 'finetune_assets[k8s]'``). Either way the process opens Pipes, so
its progress reaches the run's log and the figures it reports become the asset's metadata. Swap
the resource, not the code: ``build_definitions(training=KubernetesTraining(...))``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from dagster import AssetExecutionContext, ConfigurableResource, PipesSubprocessClient, PreviewWarning
from dagster._core.errors import (
    DagsterPipesExecutionError,  # a Pipes process exited non-zero (not public)
)
from pydantic import Field

from finetune_assets.defs.kubernetes import pod_spec
from finetune_assets.defs.pipes_messages import WholeLineMessageReader
from finetune_assets.errors import ProcessFailed
from finetune_assets.pipeline.processes import StartProcess
from finetune_assets.recipes import Recipe


def reported_figures(invocation) -> dict:
    """The figures the process reported through Pipes, as plain values."""
    return {key: value.value for key, value in invocation.get_materialize_result().metadata.items()}


class TrainingHost(ConfigurableResource):
    """Starts the training process of one materialization (the `finetuned_model` asset)."""

    def starter(self, context: AssetExecutionContext, recipe: Recipe, artifacts_root: Path) -> StartProcess:
        raise NotImplementedError


class LocalTraining(TrainingHost):
    """Trains in a child process on this machine through Dagster Pipes (`PipesSubprocessClient`):
    its progress streams into the run's log and its figures become the asset's metadata."""

    environment: dict[str, str] = Field(
        default_factory=dict, description="Added to the training process's environment (CUDA_VISIBLE_DEVICES, say)."
    )

    def starter(self, context: AssetExecutionContext, recipe: Recipe, artifacts_root: Path) -> StartProcess:
        client = PipesSubprocessClient(env=self.environment, message_reader=WholeLineMessageReader())

        def start(command, env, report):
            with warnings.catch_warnings():
                # Dagster's own Pipes session reads a property it marks as preview, and warns on
                # every run it launches; nothing here uses that property.
                warnings.filterwarnings("ignore", "Function `PipesMessageReader.expected_writer_count`", PreviewWarning)
                try:
                    return reported_figures(client.run(context=context, command=list(command), env=dict(env)))
                except DagsterPipesExecutionError as error:  # the stage tells what failed, from its record
                    raise ProcessFailed(str(error)) from error

        return start


class KubernetesTraining(TrainingHost):
    """Trains in a Kubernetes pod (`dagster_k8s.PipesK8sClient`) from the project's image, with the
    GPUs, CPU and memory the recipe's `compute.kubernetes` asks for. The artifacts root is a
    persistent volume claim mounted at the same path in the pod, so the splits, the checkpoints and
    the trained weights are where the run expects them."""

    image: str = Field(description="The project's container image, e.g. registry.example.com/finetune-assets:0.1.0.")
    artifacts_claim: str = Field(description="The PersistentVolumeClaim holding the artifacts root.")
    namespace: str | None = Field(None, description="The pod's namespace; none: the client's default.")
    python: str = Field("python", description="The interpreter in the image.")
    kubeconfig_file: str | None = Field(
        None, description="None: in-cluster config when running in a pod, else ~/.kube/config."
    )

    def run_arguments(self, recipe: Recipe, artifacts_root: Path, command, env) -> dict:
        """What ``PipesK8sClient.run`` receives besides the context."""
        return {
            "image": self.image,
            "command": [self.python, *command[1:]],
            "namespace": self.namespace,
            "env": {**env, "FINETUNE_ARTIFACTS_DIR": str(artifacts_root)},
            "base_pod_spec": pod_spec(recipe, str(artifacts_root), self.artifacts_claim),
        }

    def starter(self, context: AssetExecutionContext, recipe: Recipe, artifacts_root: Path) -> StartProcess:
        from dagster_k8s import PipesK8sClient

        client = PipesK8sClient(kubeconfig_file=self.kubeconfig_file)

        def start(command, env, report):
            arguments = self.run_arguments(recipe, artifacts_root, command, env)
            try:
                return reported_figures(client.run(context=context, **arguments))
            except DagsterPipesExecutionError as error:
                raise ProcessFailed(str(error)) from error

        return start
