"""The pod a training runs in on Kubernetes, built from the recipe's ``compute.kubernetes``.

A plain dict in the shape of a Kubernetes ``PodSpec`` (snake_case keys, as dagster-k8s accepts),
so it is built and checked without a cluster. ``PipesK8sClient`` fills in the first container's
image, command and environment; this adds what the recipe asks for (GPUs, CPU, memory, a node
selector) and what training needs in any pod: the artifacts volume at the path the run uses,
a memory-backed ``/dev/shm`` (NCCL and DataLoader workers outgrow the container default), and
no restarts (Dagster's ``RetryPolicy`` retries, and the retry resumes from the checkpoints).
"""

from __future__ import annotations

from finetune_assets.recipes import Recipe

GPU = "nvidia.com/gpu"


def pod_spec(recipe: Recipe, artifacts_root: str, artifacts_claim: str) -> dict:
    spec = recipe.compute.kubernetes
    requests = {key: value for key, value in (("cpu", spec.cpu), ("memory", spec.memory)) if value}
    limits = {"memory": spec.memory} if spec.memory else {}
    if spec.gpus:
        requests[GPU] = limits[GPU] = str(spec.gpus)
    container = {
        "name": "training",
        "resources": {"requests": requests, "limits": limits},
        "volume_mounts": [
            {"name": "artifacts", "mount_path": artifacts_root},
            {"name": "shm", "mount_path": "/dev/shm"},
        ],
    }
    pod = {
        "containers": [container],
        "volumes": [
            {"name": "artifacts", "persistent_volume_claim": {"claim_name": artifacts_claim}},
            {"name": "shm", "empty_dir": {"medium": "Memory"}},
        ],
        "restart_policy": "Never",
    }
    if spec.gpus:  # GPU nodes are usually tainted so that only pods asking for GPUs land there
        pod["tolerations"] = [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    if spec.node_selector:
        pod["node_selector"] = dict(spec.node_selector)
    return pod
