"""Where the training process runs: the ``training`` resource, a Dagster Pipes client behind one
small interface.

``finetuned_model`` builds the training command (:func:`finetune_assets.training.launch.training_command`)
and asks this resource for a launcher: ``LocalTraining`` (the default) runs it on this machine with
``PipesSubprocessClient``; ``KubernetesTraining`` runs it in a pod with dagster-k8s's
``PipesK8sClient`` (``pip install 'finetune_assets[k8s]'``). Either way the process opens Pipes, so
its progress reaches the run's log and the figures it reports become the asset's metadata. Swap
the resource, not the code: ``build_definitions(training=KubernetesTraining(...))``.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AssetExecutionContext, ConfigurableResource, PipesSubprocessClient

from finetune_assets.defs.kubernetes import pod_spec
from finetune_assets.pipeline.launching import Launch
from finetune_assets.recipes import Recipe


def reported_figures(invocation) -> dict:
    """The figures the process reported through Pipes, as plain values."""
    return {key: value.value for key, value in invocation.get_materialize_result().metadata.items()}


class TrainingLauncher(ConfigurableResource):
    """Starts the training process of one materialization."""

    def launcher(self, context: AssetExecutionContext, recipe: Recipe, artifacts_root: Path) -> Launch:
        raise NotImplementedError


class LocalTraining(TrainingLauncher):
    """Trains in a child process on this machine (``PipesSubprocessClient``); ``environment`` is
    added to the process's environment (``CUDA_VISIBLE_DEVICES``, say)."""

    environment: dict[str, str] = {}

    def launcher(self, context: AssetExecutionContext, recipe: Recipe, artifacts_root: Path) -> Launch:
        client = PipesSubprocessClient(env=self.environment)

        def launch(command, env, report):
            return reported_figures(client.run(context=context, command=list(command), env=dict(env)))

        return launch


class KubernetesTraining(TrainingLauncher):
    """Trains in a Kubernetes pod (``dagster_k8s.PipesK8sClient``) from the project's image, with
    the GPUs, CPU and memory the recipe's ``compute.kubernetes`` asks for. The artifacts root is a
    persistent volume claim mounted at the same path in the pod, so the splits, the checkpoints and
    the trained weights are where the run expects them."""

    image: str
    artifacts_claim: str  # the PersistentVolumeClaim holding the artifacts root
    namespace: str | None = None
    python: str = "python"  # the interpreter in the image
    kubeconfig_file: str | None = None  # None: in-cluster config when running in a pod, else ~/.kube/config

    def run_arguments(self, recipe: Recipe, artifacts_root: Path, command, env) -> dict:
        """What ``PipesK8sClient.run`` receives besides the context."""
        return {"image": self.image, "command": [self.python, *command[1:]], "namespace": self.namespace,
                "env": {**env, "FINETUNE_ARTIFACTS_DIR": str(artifacts_root)},
                "base_pod_spec": pod_spec(recipe, str(artifacts_root), self.artifacts_claim)}

    def launcher(self, context: AssetExecutionContext, recipe: Recipe, artifacts_root: Path) -> Launch:
        from dagster_k8s import PipesK8sClient

        client = PipesK8sClient(kubeconfig_file=self.kubeconfig_file)

        def launch(command, env, report):
            arguments = self.run_arguments(recipe, artifacts_root, command, env)
            return reported_figures(client.run(context=context, **arguments))

        return launch
