"""A throwaway MLflow tracking server on 127.0.0.1: to try publishing without a shared server, and
what the tests and ``benchmarks/ship_chatbot.py`` publish to.

It is the real ``mlflow server`` (a sqlite backend and a local artifact root in one folder), started
as its own process group so stopping it stops the workers it forked too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class LocalMlflowServer:
    """``mlflow server`` on a free port of 127.0.0.1, keeping its database, artifacts and log in ``folder``."""

    def __init__(self, folder: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder, self.uri, self.process = Path(folder), f"http://127.0.0.1:{self.port}", None

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def start(self, wait_seconds: float = 180) -> None:
        """Start it and wait until ``/health`` answers; an early exit raises with the log's end."""
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}"]
        command += ["--default-artifact-root", str(self.folder / "artifacts"), "--workers", "1"]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited early: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer at {self.uri} in {wait_seconds:.0f}s; see {self.log}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the server and the workers it started."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)

    def __enter__(self) -> LocalMlflowServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
