#!/usr/bin/env bash
# Install, then run the whole test suite (tiny data slices, 1 epoch) in two pytest-xdist workers, a
# test file to each at a time (its module fixtures are built once). Much of a test's time is one
# core's work (Python, Dagster's processes starting, imports), so two workers keep both cores busy;
# each runs torch on one thread, so two workers never fight over the cores for matrix work.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
