#!/usr/bin/env bash
# Lint and format check with the venv's ruff (pinned in pyproject's dev extra); changes nothing.
# To fix what it finds: .venv/bin/ruff check --fix . && .venv/bin/ruff format .
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
