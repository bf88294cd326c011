#!/usr/bin/env bash
# Install, then run the whole test suite (tiny data slices, 1 epoch; well under 20 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
