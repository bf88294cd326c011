#!/usr/bin/env bash
# Fresh machine to fine-tuned model: install, materialize the offline tweet_sentiment recipe, and
# print where its evaluation report and exported model are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/dagster_home}
recipe=${1:-tweet_sentiment}
.venv/bin/dagster asset materialize -m finetune_assets.definitions --select "group:${recipe}"
.venv/bin/python -m finetune_assets.show "$recipe"
