"""What a Ray Train job tells its driver, the one process of the job that Dagster launched.

Ray Train's workers and its controller are Ray actors on any node of the cluster; only the driver
(:mod:`finetune_assets.training.ray_job`) holds the Dagster Pipes channel. A Ray queue
(``ray.util.queue.Queue``, an actor kept on the driver's node so a lost node never takes it along)
carries to it, as ``(kind, payload)`` pairs:

- ``log``: rank 0's log lines (progress, validation, resume), from :class:`QueueLog`;
- ``start``: each start of the worker group: the node of each rank, the step it resumes from;
- ``failure``: the workers' exceptions as the controller sees them (:class:`FailureRelay`), a lost
  node included, before Ray Train restarts the workers;
- ``figures``: what rank 0's training reports at the end.

The driver tells them in the run log as they come (:func:`drain`) and keeps them in a
:class:`Journal`, from which the asset's Ray figures come.
"""

from __future__ import annotations

import dataclasses
import queue as queues
import threading

from ray.train import UserCallback

FAILURE_CHARS = 300  # a lost node's error runs to pages; its first lines say what happened


class QueueLog:
    """The ``log`` a training expects (``info``, ``warning``, ``error``), sent to the driver."""

    def __init__(self, queue):
        self.queue = queue

    def _put(self, level: str, text: str) -> None:
        self.queue.put(("log", (level, str(text))))

    def info(self, text) -> None:
        self._put("info", text)

    def warning(self, text) -> None:
        self._put("warning", text)

    def error(self, text) -> None:
        self._put("error", text)


class FailureRelay(UserCallback):
    """Runs in Ray Train's controller: each worker failure it handles goes to the driver."""

    def __init__(self, queue):
        self.queue = queue

    def after_exception(self, run_context, worker_exceptions: dict) -> None:
        told = {rank: f"{type(error).__name__}: {error}"[:FAILURE_CHARS] for rank, error in worker_exceptions.items()}
        self.queue.put(("failure", told))


@dataclasses.dataclass
class Journal:
    """What the job told its driver: each worker group's start, the failures, rank 0's figures."""

    starts: list[dict] = dataclasses.field(default_factory=list)
    failures: list[dict] = dataclasses.field(default_factory=list)
    figures: dict | None = None

    def ray_figures(self) -> dict:
        """The job's placement and failures as asset metadata: the node of each rank, start by start
        (``a, b | a, a``: two nodes, then one after the other was lost), how many times the workers were
        restarted and the failures that caused it, the step each start resumed at."""
        told = [f"rank {rank}: {text}" for failure in self.failures for rank, text in sorted(failure.items())]
        return {
            "ray_node_ids": " | ".join(", ".join(start["nodes"]) for start in self.starts),
            "ray_restarts": max(len(self.starts) - 1, 0),
            "ray_failures": "; ".join(told) or None,
            "ray_resumed_at_steps": ", ".join(str(start["resumed_from_step"] or 0) for start in self.starts),
        }


def drain(queue, log, done: threading.Event) -> Journal:
    """Tell what arrives on ``queue`` in ``log`` and keep it, until ``done`` is set and the queue is
    empty; runs in a thread of the driver while the job trains."""
    journal = Journal()
    while True:
        try:
            kind, payload = queue.get(timeout=0.5)
        except queues.Empty:
            if done.is_set():
                return journal
            continue
        if kind == "log":
            level, text = payload
            getattr(log, level)(text)
        elif kind == "start":
            journal.starts.append(payload)
            resumed = f", resuming at step {payload['resumed_from_step']}" if payload["resumed_from_step"] else ""
            log.info(
                f"Ray Train: {len(payload['nodes'])} workers started on nodes {', '.join(payload['nodes'])}{resumed}"
            )
        elif kind == "failure":
            journal.failures.append(payload)
            log.warning(
                f"Ray Train: worker failure, restarting from the newest checkpoint if a retry is left: {payload}"
            )
        else:
            journal.figures = payload
