"""Train one recipe's model, as its own process: the command ``finetuned_model`` launches.

    python -m finetune_assets.training.run --recipe recipes/tweet_sentiment.yaml \\
        --splits <tokenized_splits folder> --out model/ [--checkpoints model-checkpoints/]

Supports every task family and method (full, LoRA, QLoRA), any launcher: alone, under
``torchrun`` (DDP; every process runs this module, rank 0 alone logs, saves and reports) or
``accelerate launch`` (its FSDP or DeepSpeed settings reach the Trainer untouched). Checkpoints
every ``training.save_steps`` go to ``--checkpoints``; started again after a crash, it resumes
from the newest complete one of the same training, and refuses a folder holding another
training's (:mod:`finetune_assets.training.checkpoints`).

Refuses, before loading any model (the short validation pass): a recipe that does not load, a
tracker of ``training.report_to`` that is not installed, a splits folder without train and
validation, a batch that does not divide over the processes, a QLoRA recipe on a machine without
CUDA (unless it allows the LoRA fallback), a ``--precision`` other than the one
``training.precision`` resolves to on this machine. These exit with code 2 and a message naming
the setting; a crash exits non-zero as usual. Either way rank 0 records the failure (the exception,
our frames, the step reached) for the launching step to report and judge: a crash in the checkpoint
folder, bad input in the ``--out`` folder the step made (:mod:`finetune_assets.training.failure`).

Outside Dagster it logs plainly to stderr. Launched by Dagster (``PipesSubprocessClient``,
``PipesK8sClient``), rank 0 opens Dagster Pipes: its progress (step, loss, ETA) goes to the run's
log and its figures become the asset's metadata. Either way the figures are written to
``<out>/training_figures.json``, next to the weights and ``recipe.json`` (the recipe as trained,
which ``--recipe`` accepts to train it again).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from finetune_assets.errors import BAD_INPUT, RecipeError
from finetune_assets.models import precision
from finetune_assets.pipeline.artifacts import ArtifactRef, fingerprint
from finetune_assets.pipeline.caching import load as load_record
from finetune_assets.pipeline.chain import CHAIN
from finetune_assets.pipeline.quiet import no_progress_bars
from finetune_assets.pipeline.stage_names import FINETUNED_MODEL
from finetune_assets.recipes import Recipe, load_recipe
from finetune_assets.tasks import get_task
from finetune_assets.training import command, failure, tracking

EXIT_BAD_INPUT = 2


def arguments(argv: list[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(
        prog="python -m finetune_assets.training.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = cli.add_argument_group("what to train")
    inputs.add_argument(
        "--recipe",
        type=Path,
        required=True,
        help="a recipe file (.yaml), or the recipe.json a run saved next to its weights",
    )
    inputs.add_argument("--splits", type=Path, required=True, help="the tokenized splits (a tokenized_splits folder)")
    outputs = cli.add_argument_group("where it goes")
    outputs.add_argument("--out", type=Path, required=True, help="folder for the trained weights (created)")
    outputs.add_argument(
        "--checkpoints", type=Path, help="checkpoint folder kept across crashes (default: <out>-checkpoints)"
    )
    outputs.add_argument(
        "--fingerprint",
        help="whose checkpoints --checkpoints holds (default: computed from the recipe and "
        "the splits, as the pipeline names its artifacts)",
    )
    outputs.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        help="the precision the launching pipeline resolved training.precision to (its "
        "fingerprint names it); refuse to train if this machine resolves another",
    )
    return cli.parse_args(argv)


def splits_fingerprint(splits: Path) -> str:
    """The splits' fingerprint: from their artifact record when the pipeline made them, else from
    the datasets' own fingerprints (each split's ``state.json``)."""
    record = load_record(splits)
    if record:
        return record[0].fingerprint
    states = sorted(splits.glob("*/state.json"))
    return fingerprint([json.loads(path.read_text()).get("_fingerprint") for path in states])


def checkpoint_folder(args: argparse.Namespace) -> Path:
    """Where this training's checkpoints and failure records go: ``--checkpoints``, else beside ``--out``."""
    return args.checkpoints or args.out.with_name(f"{args.out.name}-checkpoints")


def training_identity(recipe: Recipe, args: argparse.Namespace) -> str:
    """The fingerprint naming this training's checkpoints: ``--fingerprint``, else computed as the
    pipeline names the trained model."""
    return args.fingerprint or CHAIN[FINETUNED_MODEL].fingerprint(
        recipe, [ArtifactRef(str(args.splits), splits_fingerprint(args.splits))]
    )


def check_precision(recipe: Recipe, expected: str | None) -> None:
    """Refuse to train in another precision than the one the pipeline named the artifact by: the
    machine that launched this process (say a CPU without bf16) and the one running it (a GPU pod)
    may resolve ``training.precision: auto`` differently."""
    here = precision.resolve(recipe)
    if expected and here.name != expected:
        raise RecipeError(
            f"{recipe.source_file.name}: training.precision: {recipe.training.precision} resolves to "
            f"{here.name} on this machine ({here.reason}) but to {expected} where the pipeline "
            "runs, which named the model by it. Set training.precision to the precision you "
            "want (fp32 or bf16) so both machines agree."
        )


@contextlib.contextmanager
def channel():
    """``(log, report)``: Dagster Pipes on rank 0 of a process Dagster launched, else plain logging
    (warnings only on the other ranks) and no report beyond the figures file."""
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if command.rank() == 0 and PipesEnvVarParamsLoader().is_dagster_pipes_process():
        with open_dagster_pipes() as pipes:
            yield pipes.log, lambda figures: pipes.report_asset_materialization(metadata=figures)
        return
    logging.basicConfig(
        level=logging.INFO if command.rank() == 0 else logging.WARNING,
        stream=sys.stderr,
        format=f"%(asctime)s rank {command.rank()} %(levelname)s %(message)s",
    )
    yield logging.getLogger("finetune_assets.training"), lambda figures: None


@dataclasses.dataclass(frozen=True)
class Host:
    """What runs this training besides a plain process: Ray Train's worker
    (:mod:`finetune_assets.training.ray_worker`) brings its own ``channel`` to the run log, keeps the
    checkpoints in its storage (the Trainer writes them to ``checkpoints``, a scratch folder on the
    node, and ``callbacks`` report each one to Ray) and hands back the one to ``resume``."""

    channel: Callable = channel
    checkpoints: Path | None = None
    resume: tuple[int, Path] | None = None
    callbacks: tuple = ()


def spare_imports(recipe: Recipe) -> None:
    """Keep bitsandbytes out of a process that does not train QLoRA. The Trainer imports peft, and
    peft imports bitsandbytes whenever it is installed, which loads torch's compiler: several
    seconds of every training start, for nothing unless the method quantizes. A ``None`` entry in
    ``sys.modules`` is Python's way to say a module is absent: peft and transformers then skip their
    bitsandbytes layers, as on a machine without it. Only for this process (``__main__``), never for
    a process that imports this module."""
    if recipe.method != "qlora":
        sys.modules.setdefault("bitsandbytes", None)


def main(argv: list[str] | None = None, process: bool = False, host: Host = Host()) -> int:
    """Train as ``argv`` says; ``process``: this is the training process itself (``__main__``);
    ``host``: what runs it, when not a plain process."""
    args = arguments(argv)
    checkpoint_dir = checkpoint_folder(args)
    with host.channel() as (log, report):
        try:
            recipe = load_recipe(args.recipe)
            if process:
                spare_imports(recipe)
            tracking.require_trackers(recipe)
            command.check_splits(recipe, args.splits, command.world_size())
            check_precision(recipe, args.precision)
            no_progress_bars()
            identity = training_identity(recipe, args)
            args.out.mkdir(parents=True, exist_ok=True)
            from finetune_assets.training.trainer import train  # after the checks and spare_imports

            # train() refuses another training's checkpoints and a method this machine cannot
            # run before it loads any data or model
            figures = train(
                get_task(recipe),
                args.splits,
                args.out,
                log,
                host.checkpoints or checkpoint_dir,
                identity,
                resume=host.resume,
                callbacks=host.callbacks,
            )
        except BAD_INPUT as error:
            log.error(str(error))
            if args.out.is_dir():  # the launching step's folder; never checkpoints it may have refused
                _record(args.out, error, bad_input=True)
            return EXIT_BAD_INPUT
        except Exception as error:  # said here and recorded for the step that launched this process
            log.error(f"training failed: {failure.describe(_record(checkpoint_dir, error))}")
            raise
        if command.rank() == 0:
            report({key: value for key, value in figures.items() if value is not None})
    _leave_process_group()
    return 0


def _record(folder: Path, error: Exception, bad_input: bool = False) -> dict:
    """The failure, written by rank 0 alone for the launching step (:mod:`finetune_assets.training.failure`)."""
    return failure.record(folder, error, bad_input) if command.rank() == 0 else failure.entry_of(error, bad_input)


def _leave_process_group() -> None:
    """Close the DDP process group the Trainer opened, so the launcher sees a clean exit."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(process=True))
