#!/usr/bin/env bash
# Create a Dagster instance's storage once, before any run: `bash scripts/init_dagster_home.sh [DIR]`
# (default: dagster_home/). On a fresh DAGSTER_HOME every process creates the SQLite tables on first
# use, and two runs starting together fail one in three ("table runs already exists"). Copies the
# project's dagster.yaml into DIR when DIR has none. Safe to run again (it only migrates).
set -euo pipefail
cd "$(dirname "$0")/.."
home=${1:-dagster_home}
mkdir -p "$home"
[ -f "$home/dagster.yaml" ] || cp dagster_home/dagster.yaml "$home/"
DAGSTER_HOME=$(cd "$home" && pwd) "${DAGSTER:-.venv/bin/dagster}" instance migrate > /dev/null
