"""The driver of a Ray Train job: what ``compute.launcher: ray`` starts, through Dagster Pipes as
the other launchers start the training process.

    python -m finetune_assets.training.ray_job --recipe <recipe.json> --splits <tokenized_splits> \\
        --out <model folder> [--checkpoints <folder>] [--fingerprint ...] [--precision ...]

It takes the arguments of ``python -m finetune_assets.training.run``, runs where Dagster runs,
connects to the cluster at ``compute.ray.address`` and runs one ``TorchTrainer``: ``workers``
workers of ``cpus_per_worker`` CPUs (and a GPU each with ``use_gpu``), placed by ``placement``
(SPREAD: on different nodes where they fit), each running the project's training
(:func:`finetune_assets.training.ray_worker.train_loop`). After a failure, a lost node included,
Ray Train restarts the workers up to ``max_failures`` times from the newest checkpoint in
``storage`` (by default the training's checkpoint folder, which the pipeline keys by fingerprint).
The job is named by recipe, fingerprint and worker count: a new driver for the same training
(Dagster's retry after this process died) resumes the same checkpoints, and never another
training's. Once the model is trained, the job's folder in the storage is removed.

Like the training process, it opens Dagster Pipes when Dagster launched it (plain logging
otherwise). Rank 0's log lines and figures reach it through a Ray queue
(:mod:`finetune_assets.training.ray_relay`) and go on to the run log and the asset's metadata,
with the job's own figures: the node of each rank, the restarts, the failures, the steps resumed at.
Every node needs the project installed and the artifacts root at the same path.
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.util.queue import Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from finetune_assets.errors import RecipeError
from finetune_assets.recipes import Recipe, load_recipe
from finetune_assets.training import failure, run
from finetune_assets.training.ray_relay import FailureRelay, Journal, drain
from finetune_assets.training.ray_worker import train_loop


def connect(recipe: Recipe) -> None:
    """Join the cluster at ``compute.ray.address``; none there is an error naming the setting."""
    address = recipe.compute.ray.address
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as error:
        raise RecipeError(
            f"{recipe.source_file.name}: compute.ray.address: no Ray cluster at {address} ({error}); start "
            "one (`ray start --head` on the head node, `ray start --address <head>:6379` on the others) or "
            "fix the address"
        ) from error


def trainer(recipe: Recipe, argv: list[str], storage: str, name: str, queue) -> TorchTrainer:
    """The Ray Train job of ``recipe``'s ``compute.ray``, each worker training as ``argv`` says."""
    spec = recipe.compute.ray
    return TorchTrainer(
        train_loop,
        train_loop_config={"argv": argv, "queue": queue},
        scaling_config=ScalingConfig(
            num_workers=spec.workers,
            use_gpu=spec.use_gpu,
            resources_per_worker={"CPU": spec.cpus_per_worker},
            placement_strategy=spec.placement,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=recipe.training.save_total_limit),
            callbacks=[FailureRelay(queue)],
        ),
    )


def train(recipe: Recipe, argv: list[str], storage: str, name: str, log) -> Journal:
    """Run the job, telling the run log what its workers say as they say it; remove its
    checkpoints once it trained the model."""
    here = ray.get_runtime_context().get_node_id()  # the queue stays with the driver, whatever node is lost
    queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(here, False)})
    done = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        told = pool.submit(drain, queue, log, done)
        try:
            result = trainer(recipe, argv, storage, name, queue).fit()
        finally:
            done.set()
    journal = told.result()
    if journal.figures is not None:
        result.filesystem.delete_dir(result.path)  # trained: nothing left to resume
    return journal


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = run.arguments(argv)
    checkpoints = run.checkpoint_folder(args)
    with run.channel() as (log, report):
        try:
            recipe = load_recipe(args.recipe)
            name = f"{recipe.name}-{run.training_identity(recipe, args)}-{recipe.compute.ray.workers}w"
            connect(recipe)
        except Exception as error:  # recorded for the launching step, as the training records its own
            log.error(f"training failed: {failure.describe(failure.record(checkpoints, error))}")
            raise
        journal = train(recipe, argv, recipe.compute.ray.storage or str(checkpoints.resolve()), name, log)
        if journal.figures is None:
            log.error("the Ray Train job ended without a trained model: its workers refused their input (above)")
            return run.EXIT_BAD_INPUT
        figures = {**journal.figures, **journal.ray_figures()}
        report({key: value for key, value in figures.items() if value is not None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
