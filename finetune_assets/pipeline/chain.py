"""The chain: six stages from raw data to the exported model, in one table.

Each :class:`Stage` row says everything about one stage: the stages it reads (by the names of
:mod:`.stage_names`), the file its reference points at, what it holds, its code version, the recipe
sections its fingerprint depends on, and the functions that do the work (typed by the protocols
below). The asset factory makes one Dagster asset per row and the runner runs any row the same way,
so adding or changing a stage is an edit to this table. The checks judged on a stage's artifact are
declared in :mod:`finetune_assets.checks`.

    raw_dataset -> clean_dataset -> tokenized_splits -> finetuned_model -> evaluation_report -> exported_model

A recipe with a ``sweep:`` trains each variant side by side: ``finetuned_model`` and
``evaluation_report`` are made once per variant (``per_variant``), and :data:`SWEEP_REPORT` compares
them on the same test rows before ``exported_model``, which exports the variant it chose. A recipe
whose ``publish:`` names a target (``mlflow``, ``hub``) gets :data:`PUBLISHED_MODEL` after
``exported_model``: the champion the gate leaves in place, published (:mod:`finetune_assets.publishing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from finetune_assets.pipeline import stages
from finetune_assets.pipeline.artifacts import ArtifactRef, fingerprint
from finetune_assets.pipeline.facts import RunFacts
from finetune_assets.pipeline.stage_names import (
    CLEAN_DATASET,
    EVALUATION_REPORT,
    EXPORTED_MODEL,
    FINETUNED_MODEL,
    RAW_DATASET,
    TOKENIZED_SPLITS,
)
from finetune_assets.pipeline.stage_names import (
    PUBLISHED_MODEL as PUBLISHED_MODEL_NAME,
)
from finetune_assets.pipeline.stage_names import (
    SWEEP_REPORT as SWEEP_REPORT_NAME,
)
from finetune_assets.pipeline.stages import Inputs, Result, StageWork
from finetune_assets.promotion import champion_scores, gate, sweep_report
from finetune_assets.publishing import step as publishing
from finetune_assets.recipes import Recipe
from finetune_assets.tasks import get_task


class StageRun(Protocol):
    """The stage's work (:mod:`finetune_assets.pipeline.stages`): its artifact written into
    ``work.staging``, returning the info its reference carries and the metadata shown in the UI."""

    def __call__(self, work: StageWork, *upstream: ArtifactRef) -> Result: ...


class ReadInputs(Protocol):
    """What a stage reads before its fingerprint is known (the raw rows, a sweep's evaluations)."""

    def __call__(self, recipe: Recipe, log, root: Path, upstream: list[ArtifactRef]) -> Inputs: ...


class Finish(Protocol):
    """A step after every run, cached or not, once the stage's own checks are judged: it hands on a
    reference (the made one, or another: the champion the gate kept) and metadata explaining it."""

    def __call__(
        self, recipe: Recipe, root: Path, log, ref: ArtifactRef, facts: RunFacts
    ) -> tuple[ArtifactRef, dict]: ...


RowSchema = Callable[[Recipe], type]  # the pandera DataFrameModel the stage's rows satisfy
OnThisMachine = Callable[[Recipe], str]  # what this machine makes of the recipe's settings (the precision)


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]
    artifact: str  # the file inside the stage's folder its reference points at ("" = the folder)
    description: str  # what the asset is, with {placeholders} filled from the recipe (see describe)
    code_version: str  # bump when the stage's code changes what it writes; part of the fingerprint
    reads: tuple[str, ...]  # recipe sections (dotted keys) the stage's output depends on
    run: StageRun
    read_inputs: ReadInputs | None = None  # read before the cache lookup
    finish: Finish | None = None
    row_schema: RowSchema | None = None
    kinds: tuple[str, ...] = ("python",)
    # The training stage: runs in a launched process, resumes from checkpoints kept across failed
    # attempts; in Dagster it holds a device (the recipe's pool) and retries (its RetryPolicy).
    trains: bool = False
    # In a recipe with a sweep: one artifact per variant (a Dagster partition each), trained and
    # evaluated under the variant's recipe. Stages after them read the variant the sweep report chose.
    per_variant: bool = False
    compares: str = ""  # the per-variant stage whose every variant this stage reads (the sweep report)
    machine: OnThisMachine | None = None
    # The publishing stage: gets the run's id and the mlflow resource's settings in its RunFacts.
    publishes: bool = False
    # Sections the stage reads for some recipes only, as the recipe's task family says (preference
    # pairs whose rejected answers the starting model writes: their cleaning loads the base model);
    # the other recipes' fingerprints do not change with settings they never use.
    reads_for: Callable[[Recipe], tuple[str, ...]] | None = None
    # The user's code the stage runs for some recipes, by name, with the hash of its source (reward
    # functions): part of the version, so editing that code makes the stage stale and retrains it.
    code_for: Callable[[Recipe], dict[str, str]] | None = None

    def describe(self, recipe: Recipe) -> str:
        """What this stage's asset is for ``recipe``, in words a person reading the UI understands."""
        return self.description.format(**recipe_terms(recipe))

    def sections(self, recipe: Recipe) -> tuple[str, ...]:
        """The recipe sections this stage reads for ``recipe``: :attr:`reads` and :attr:`reads_for`'s."""
        return self.reads + (self.reads_for(recipe) if self.reads_for else ())

    def version(self, recipe: Recipe) -> str:
        """The stage's code version plus the recipe sections it reads (and the hashes of the user's code
        it runs, :attr:`code_for`): Dagster's code version, so editing a recipe or that code marks
        exactly the affected assets stale in the UI."""
        code = self.code_for(recipe) if self.code_for else {}
        read = recipe.section(*self.sections(recipe))
        return f"{self.code_version}-{fingerprint(read, code) if code else fingerprint(read)}"

    def uses_base(self, recipe: Recipe) -> bool:
        """Whether the stage loads the base model (its tokenizer or weights) for ``recipe``."""
        return "base_model" in self.sections(recipe)

    def fingerprint(self, recipe: Recipe, upstream: list[ArtifactRef], *extra: str) -> str:
        """What names the stage's artifact: upstream fingerprints, :meth:`version`, ``extra`` (the raw
        data's content hash), what :attr:`machine` resolves on this machine (the precision) and, for a
        stage that uses a ``recipe:<name>`` base, the pinned champion's fingerprint."""
        resolved = (self.machine(recipe),) if self.machine else ()
        base = (recipe.base_champion.fingerprint,) if self.uses_base(recipe) and recipe.base_champion else ()
        return fingerprint([ref.fingerprint for ref in upstream], self.version(recipe), *extra, *resolved, *base)


METHOD_WORDS = {
    "full": "full fine-tuning: every weight trains",
    "lora": "LoRA: small adapter matrices of rank {r} train while the base model stays frozen",
    "qlora": "QLoRA: LoRA adapters of rank {r} on a 4-bit quantized base model",
}


def recipe_terms(recipe: Recipe) -> dict:
    """The recipe's own words for the stage descriptions: its source, base model, task, method."""
    task = get_task(recipe)
    return {
        "source": recipe.dataset.source,
        "base_model": recipe.base_model,
        "task": recipe.task,
        "method": METHOD_WORDS[recipe.method].format(r=recipe.lora.r),
        "metric": recipe.promotion.metric or task.primary_metric,
        "pipeline_task": task.pipeline_task,
        "max_length": recipe.training.max_length,
    }


def resolved_precision(recipe: Recipe) -> str:
    """``training.precision`` as this machine resolves it (``auto`` -> bf16 or fp32): models trained
    or scored in different precisions are different artifacts."""
    return f"precision={get_task(recipe).precision.name}"


def resolved_inference(recipe: Recipe) -> str:
    """:func:`resolved_precision` and the dtype evaluation holds the weights in (bf16 where native):
    a report scored with float32 weights is not reused where bf16 weights would score it."""
    return get_task(recipe).precision.scoring_key()


STAGES = (
    Stage(
        RAW_DATASET,
        (),
        "rows.parquet",
        "The rows of `{source}` exactly as read (a parquet file), never changed afterwards: what every "
        "later asset can be traced back to.",
        code_version="1",
        reads=("dataset",),
        run=stages.raw_dataset,
        read_inputs=stages.read_raw_rows,
    ),
    Stage(
        CLEAN_DATASET,
        (RAW_DATASET,),
        "rows.parquet",
        "The {task} rows of raw_dataset after the recipe's cleaning rules, validated by the task's pandera "
        "schema; every dropped row is counted by reason and kept in dropped.parquet.",
        code_version="1",
        reads=("task", "dataset", "cleaning"),
        reads_for=lambda recipe: get_task(recipe).cleaning_reads(),
        run=stages.clean_dataset,
        row_schema=lambda recipe: get_task(recipe).schema(),
    ),
    Stage(
        TOKENIZED_SPLITS,
        (CLEAN_DATASET,),
        "",
        "The clean rows split into train, validation and test, tokenized by the tokenizer of `{base_model}` "
        "(at most {max_length} tokens per input).",
        code_version="1",
        reads=("base_model", "splits", "training.max_length", "training.max_target_length", "training.input_prefix"),
        run=stages.tokenized_splits,
    ),
    Stage(
        FINETUNED_MODEL,
        (TOKENIZED_SPLITS,),
        "",
        "`{base_model}` fine-tuned on the training split ({method}): the checkpoint, its loss curve and "
        "training figures.",
        code_version="5",
        reads=("base_model", "method", "lora", "quantization", "training"),
        reads_for=lambda recipe: get_task(recipe).training_reads(),
        code_for=lambda recipe: get_task(recipe).training_code(),
        run=stages.finetuned_model,
        kinds=("python", "huggingface"),
        trains=True,
        per_variant=True,
        machine=resolved_precision,
    ),
    Stage(
        EVALUATION_REPORT,
        (TOKENIZED_SPLITS, FINETUNED_MODEL),
        "report.json",
        "The fine-tuned model, the untuned `{base_model}` and the current champion scored on the same test "
        "rows ({metric} says which is better), with plots and sample predictions.",
        code_version="4",
        reads=("generation", "evaluation"),
        reads_for=lambda recipe: get_task(recipe).evaluation_reads(),
        run=stages.evaluation_report,
        finish=champion_scores.for_report,
        per_variant=True,
        machine=resolved_inference,
    ),
    Stage(
        EXPORTED_MODEL,
        (FINETUNED_MODEL, EVALUATION_REPORT),
        "",
        'The fine-tuned model as a self-contained folder that `transformers.pipeline("{pipeline_task}")` '
        "loads, with its model card; the promotion gate decides whether it replaces the champion.",
        code_version="6",
        reads=("generation", "publish"),  # the GGUF files, and the model card says where it is published
        run=stages.exported_model,
        finish=gate.gate,
        kinds=("python", "huggingface"),
    ),
)


def _variant_evaluations(recipe: Recipe, log, root, upstream: list[ArtifactRef]):
    """Each sweep variant's evaluation_report on these splits, where it exists."""
    return sweep_report.evaluations(recipe, root, upstream[0], CHAIN[FINETUNED_MODEL], CHAIN[EVALUATION_REPORT])


SWEEP_REPORT = Stage(
    SWEEP_REPORT_NAME,
    (TOKENIZED_SPLITS,),
    "sweep.json",
    "Every variant of the recipe's sweep scored on the same test rows, side by side; the best by {metric} "
    "goes on to exported_model.",
    code_version="1",
    reads=("sweep", "promotion"),
    run=sweep_report.compare,
    read_inputs=_variant_evaluations,
    compares=EVALUATION_REPORT,
)


def _publish(recipe: Recipe, root: Path, log, ref: ArtifactRef, facts: RunFacts) -> tuple[ArtifactRef, dict]:
    """``published_model``'s finish step, told each stage's code version (the published champion's tags)."""
    versions = {stage.name: stage.version(recipe) for stage in stages_of(recipe)}
    return publishing.publish(recipe, root, log, ref, facts, versions)


PUBLISHED_MODEL = Stage(
    PUBLISHED_MODEL_NAME,
    (EXPORTED_MODEL,),
    publishing.TARGETS,
    "The champion the promotion gate leaves in place, published to the targets of the recipe's publish: "
    "section (the MLflow Model Registry, the Hugging Face Hub); a champion already published there is "
    "found by its fingerprint and reused, never published twice.",
    code_version="1",
    reads=("publish.mlflow", "publish.hub"),
    run=publishing.plan,
    finish=_publish,
    publishes=True,
)

CHAIN = {stage.name: stage for stage in (*STAGES, SWEEP_REPORT, PUBLISHED_MODEL)}


def stages_of(recipe: Recipe) -> tuple[Stage, ...]:
    """The chain of one recipe: the six stages, with a ``sweep:`` its comparison before the export,
    and with a publishing target the publishing after it."""
    chain = STAGES if recipe.sweep is None else (*STAGES[:-1], SWEEP_REPORT, STAGES[-1])
    return (*chain, PUBLISHED_MODEL) if publishing.publishes(recipe) else chain
