"""Starting and stopping ``dagster dev`` in tests: a free port, waiting until it serves its code
locations, and stopping it with everything it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


LOCATIONS_LOADED = json.dumps(
    {"query": "{ locationStatusesOrError { ... on WorkspaceLocationStatusEntries { entries { loadStatus } } } }"}
).encode()


def wait_until_serving(server: subprocess.Popen, url: str, log: Path, seconds: float = 180) -> None:
    """Until the webserver answers and every code location behind it has loaded: the webserver
    answers first, and on a slow machine the code location's imports take many seconds more, in
    which the UI's pages show no assets."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster dev exited with {server.returncode}:\n{log.read_text()[-3000:]}"
        if _locations_loaded(url):
            return
        time.sleep(0.5)
    pytest.fail(f"dagster dev did not load its code locations within {seconds} s:\n{log.read_text()[-3000:]}")


def _locations_loaded(url: str) -> bool:
    request = urllib.request.Request(
        f"{url}/graphql", data=LOCATIONS_LOADED, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            entries = json.load(answer)["data"]["locationStatusesOrError"].get("entries")
    except (OSError, ValueError, KeyError, TypeError):  # not up yet, or an answer without the field
        return False
    return bool(entries) and all(entry["loadStatus"] == "LOADED" for entry in entries)


def stop(server: subprocess.Popen) -> None:
    """Interrupt dagster dev and everything it started (webserver, daemon, code server, run
    workers, training processes: one process group, started in its own session), then kill what is
    left, by process id."""
    try:
        started = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    for process in started:  # anything that left the group
        if process.is_running():
            process.kill()
    psutil.wait_procs(started, timeout=10)
