"""How a stage runs its work in another process, without knowing who starts it.

A stage that runs a process (``finetuned_model``) builds a command line and calls the :data:`StartProcess`
the runner hands it: ``start_process(command, env, report) -> figures``. Under Dagster that is a Pipes
client (:mod:`finetune_assets.defs.training`: a local subprocess, or a Kubernetes pod) and the
figures are what the process reported through Pipes; in scripts and benchmarks it is
:func:`run_process`, a plain subprocess whose figures are read from ``report``, the file the
process writes them to. Either way the stage code is the same.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from finetune_assets.errors import ProcessFailed

StartProcess = Callable[[Sequence[str], Mapping[str, str], Path], dict]


def run_process(command: Sequence[str], env: Mapping[str, str], report: Path) -> dict:
    """Run ``command`` here (its output goes where ours does) and return the figures it wrote to
    ``report``; raises :class:`ProcessFailed` when it exits with an error."""
    done = subprocess.run(list(command), env={**os.environ, **env})
    if done.returncode != 0:
        raise ProcessFailed(f"{' '.join(command[:4])} ... exited with code {done.returncode}; its log above says why")
    return json.loads(report.read_text())
