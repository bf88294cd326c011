"""What each Ray Train worker runs: the project's own training (:func:`finetune_assets.training.run.main`),
with Ray Train keeping the checkpoints.

Ray Train starts the workers as a group, one per ``compute.ray.workers``, with the DDP process group
already open and ``RANK``/``WORLD_SIZE`` set, so the training runs as under ``torchrun``. Around it:

- the Trainer writes its checkpoints to a fresh scratch folder on the node, and Ray Train's
  ``RayTrainReportCallback`` copies each into the job's storage (``compute.ray.storage``), every
  rank's files into one checkpoint (the weights and optimizer of rank 0, each rank's RNG state);
- after a failure (a worker gone, a node lost) Ray Train starts the group again and
  ``ray.train.get_checkpoint()`` hands it the newest; the Trainer resumes it with its own
  ``resume_from_checkpoint``: weights, optimizer, scheduler, RNG and the position in the epoch, so
  the training goes on at the checkpoint's step, not at the start of its epoch (ray#46814);
- rank 0 tells the driver (:mod:`finetune_assets.training.ray_relay`) where the ranks run, its log
  lines and, at the end, its figures; the other ranks log warnings alone, as under torchrun.

``prepare_trainer`` (Ray Data datasets in the Trainer) is not needed: every worker reads its share
of the tokenized splits from the artifacts root, which every node reaches.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import ray
import ray.train

from finetune_assets.training import command, run
from finetune_assets.training.ray_relay import QueueLog


def train_loop(config: dict) -> None:
    """Ray Train's function on every worker: ``config`` holds the training's arguments (those of
    ``python -m finetune_assets.training.run``) and the queue to the driver."""
    from ray.train.huggingface.transformers import RayTrainReportCallback  # transformers: not in the driver

    queue = config["queue"]
    nodes = node_of_each_rank()
    with newest_checkpoint() as resume:
        if command.rank() == 0:
            queue.put(("start", {"nodes": nodes, "resumed_from_step": resume[0] if resume else None}))
        host = run.Host(
            channel=lambda: _channel(queue),
            # the worker's folder in Ray's session on the node: a dead attempt's leftovers go with it
            checkpoints=Path(tempfile.mkdtemp(prefix="checkpoints-", dir=Path.cwd())),
            resume=resume,
            callbacks=(RayTrainReportCallback(),),
        )
        # bad input returns without figures (recorded for the launching step, and the driver says so);
        # a crash raises, and Ray Train restarts the workers while max_failures allows
        run.main(config["argv"], host=host)


def node_of_each_rank() -> list[str]:
    """The Ray node id of every rank, gathered over the process group Ray Train opened."""
    import torch.distributed

    nodes = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(nodes, ray.get_runtime_context().get_node_id())
    return nodes


@contextlib.contextmanager
def newest_checkpoint():
    """``(step, folder)`` of the Hugging Face checkpoint inside Ray Train's newest, on this node for
    as long as the training runs; None on a first start."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        saved = Path(folder) / "checkpoint"  # where RayTrainReportCallback puts the Trainer's checkpoint
        yield json.loads((saved / "trainer_state.json").read_text())["global_step"], saved


@contextlib.contextmanager
def _channel(queue):
    """Rank 0 logs and reports to the driver; the other ranks log warnings plainly."""
    if command.rank() == 0:
        yield QueueLog(queue), lambda figures: queue.put(("figures", figures))
        return
    with run.channel() as plain:
        yield plain
