"""The chain: six stages from raw data to the exported model, in one table.

Each :class:`Stage` row says everything about one stage: the stages it reads, the file its
reference points at, what it holds, its code version, the recipe sections its fingerprint depends
on, and the functions that do the work. The asset factory makes one Dagster asset per row and the
runner runs any row the same way, so adding or changing a stage is an edit to this table.

    raw_dataset -> clean_dataset -> tokenized_splits -> finetuned_model -> evaluation_report -> exported_model

A recipe with a ``sweep:`` trains each variant side by side: ``finetuned_model`` and
``evaluation_report`` are made once per variant (``per_variant``), and :data:`SWEEP_REPORT` compares
them on the same test rows before ``exported_model``, which exports the variant it chose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from finetune_assets.pipeline import quality_gates, stages
from finetune_assets.promotion import champion_scores, gate, sweep_report
from finetune_assets.pipeline.artifacts import ArtifactRef, fingerprint
from finetune_assets.recipes import Recipe
from finetune_assets.tasks import get_task


@dataclass(frozen=True)
class StageCheck:
    """A check on a stage's own artifact, judged by the runner on the artifact it made or reused and
    before the stage's ``finish`` step (the promotion gate) decides; Dagster shows it as the asset's
    own check. ``judge(recipe, ref)`` returns ``passed``, ``description`` and ``figures``
    (:mod:`.quality_gates`). An ERROR check that fails stops what follows (Dagster: ``blocking``) and
    the promotion; a failed WARN check is shown, and blocks promotion unless
    ``promotion.allow_warnings``."""

    name: str
    description: str  # for a reviewer: what it compares, what failing means, what to do
    judge: quality_gates.Judge
    severity: str = "ERROR"  # or "WARN"
    applies: Callable[[Recipe], bool] = lambda recipe: True  # e.g. only to classification recipes


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]
    artifact: str  # the file inside the stage's folder its reference points at ("" = the folder)
    description: str  # what the asset is, with {placeholders} filled from the recipe (see describe)
    code_version: str  # bump when the stage's code changes what it writes; part of the fingerprint
    reads: tuple[str, ...]  # recipe sections (dotted keys) the stage's output depends on
    run: Callable  # (StageWork, *upstream refs) -> (info, metadata); see pipeline.stages
    read_inputs: Callable | None = None  # (recipe, log, root, upstream refs) -> Inputs, read before the cache lookup
    finish: Callable | None = None  # (recipe, root, log, ref, RunFacts) -> (ref, metadata), after every run
    row_schema: Callable | None = None  # recipe -> the pandera model the stage's rows satisfy
    kinds: tuple[str, ...] = ("python",)
    # The training stage: runs in a launched process, resumes from checkpoints kept across failed
    # attempts; in Dagster it holds a device (the recipe's pool) and retries (its RetryPolicy).
    trains: bool = False
    # In a recipe with a sweep: one artifact per variant (a Dagster partition each), trained and
    # evaluated under the variant's recipe. Stages after them read the variant the sweep report chose.
    per_variant: bool = False
    compares: str = ""  # the per-variant stage whose every variant this stage reads (the sweep report)
    checks: tuple[StageCheck, ...] = ()  # judged on the artifact before ``finish`` (see StageCheck)
    machine: Callable | None = None  # recipe -> what this machine makes of the recipe's settings

    def describe(self, recipe: Recipe) -> str:
        """What this stage's asset is for ``recipe``, in words a person reading the UI understands."""
        return self.description.format(**recipe_terms(recipe))

    def version(self, recipe: Recipe) -> str:
        """The stage's code version plus the recipe sections it reads: Dagster's code version, so
        editing a recipe marks exactly the affected assets stale in the UI."""
        return f"{self.code_version}-{fingerprint(recipe.section(*self.reads))}"

    def checks_for(self, recipe: Recipe) -> tuple[StageCheck, ...]:
        """The stage's own checks that apply to ``recipe`` (e.g. beats_majority_class: classification only)."""
        return tuple(check for check in self.checks if check.applies(recipe))

    def fingerprint(self, recipe: Recipe, upstream: list[ArtifactRef], *extra: str) -> str:
        """What names the stage's artifact: upstream fingerprints, :meth:`version`, ``extra`` (the raw
        data's content hash) and what :attr:`machine` resolves on this machine (the precision)."""
        resolved = (self.machine(recipe),) if self.machine else ()
        return fingerprint([ref.fingerprint for ref in upstream], self.version(recipe), *extra, *resolved)


METHOD_WORDS = {
    "full": "full fine-tuning: every weight trains",
    "lora": "LoRA: small adapter matrices of rank {r} train while the base model stays frozen",
    "qlora": "QLoRA: LoRA adapters of rank {r} on a 4-bit quantized base model",
}


def recipe_terms(recipe: Recipe) -> dict:
    """The recipe's own words for the stage descriptions: its source, base model, task, method."""
    task = get_task(recipe)
    return {"source": recipe.dataset.source, "base_model": recipe.base_model, "task": recipe.task,
            "method": METHOD_WORDS[recipe.method].format(r=recipe.lora.r),
            "metric": recipe.promotion.metric or task.primary_metric, "pipeline_task": task.pipeline_task,
            "max_length": recipe.training.max_length}


def resolved_precision(recipe: Recipe) -> str:
    """``training.precision`` as this machine resolves it (``auto`` -> bf16 or fp32): models trained
    or scored in different precisions are different artifacts."""
    return f"precision={get_task(recipe).precision.name}"


STAGES = (
    Stage("raw_dataset", (), "rows.parquet",
          "The rows of `{source}` exactly as read (a parquet file), never changed afterwards: what every "
          "later asset can be traced back to.",
          code_version="1", reads=("dataset",),
          run=stages.raw_dataset, read_inputs=stages.read_raw_rows),
    Stage("clean_dataset", ("raw_dataset",), "rows.parquet",
          "The {task} rows of raw_dataset after the recipe's cleaning rules, validated by the task's pandera "
          "schema; every dropped row is counted by reason and kept in dropped.parquet.",
          code_version="1", reads=("task", "dataset", "cleaning"),
          run=stages.clean_dataset, row_schema=lambda recipe: get_task(recipe).schema()),
    Stage("tokenized_splits", ("clean_dataset",), "",
          "The clean rows split into train, validation and test, tokenized by the tokenizer of `{base_model}` "
          "(at most {max_length} tokens per input).",
          code_version="1", reads=("base_model", "splits", "training.max_length",
                                   "training.max_target_length", "training.input_prefix"),
          run=stages.tokenized_splits),
    # 2: training_figures.json next to the weights; 3: trained in its own process, recipe.json beside;
    # 4: peak memory in the figures; 5: precision in the figures
    Stage("finetuned_model", ("tokenized_splits",), "",
          "`{base_model}` fine-tuned on the training split ({method}): the checkpoint, its loss curve and "
          "training figures.",
          code_version="5", reads=("base_model", "method", "lora", "quantization", "training"),
          run=stages.finetuned_model, kinds=("python", "huggingface"), trains=True, per_variant=True,
          machine=resolved_precision,
          checks=(StageCheck("loss_decreased", "The training loss fell: the mean of the last quarter of the losses the "
                             "Trainer logged is below the first quarter's (by more than checks.min_loss_decrease). "
                             "Failing means the model learned little or nothing (a learning rate too small or so large "
                             "that training diverged, broken labels); look at the loss curve, fix the recipe or data "
                             "and train again. WARN: shown, and the export is not promoted unless "
                             "promotion.allow_warnings.", quality_gates.loss_decreased, "WARN"),)),
    # 2: test_rows and rows_key in the reference (the gate compares on identical rows); 3: precision;
    # 4: error analysis (confidences, length buckets), general-text perplexity
    Stage("evaluation_report", ("tokenized_splits", "finetuned_model"), "report.json",
          "The fine-tuned model, the untuned `{base_model}` and the current champion scored on the same test "
          "rows ({metric} says which is better), with plots and sample predictions.",
          code_version="4", reads=("generation", "evaluation"),
          run=stages.evaluation_report, finish=champion_scores.for_report, per_variant=True,
          machine=resolved_precision,
          checks=(
              StageCheck("beats_base_model", "The fine-tuned model beats its untuned base model on the promotion "
                         "metric (f1_macro, rougeL or perplexity unless promotion.metric says otherwise), both scored on "
                         "the same test rows, by more than checks.min_gain_over_base. Failing means fine-tuning bought "
                         "nothing: the export does not run (ERROR, blocking). Look at the learning rate, the epochs, the "
                         "labels and the loss curve.", quality_gates.beats_base_model),
              StageCheck("beats_majority_class", "Test accuracy is above the share of the most common test label (by "
                         "more than checks.min_accuracy_over_majority): the model does better than always answering "
                         "that label. Failing means it learned the label frequencies, not the texts: the export does "
                         "not run (ERROR, blocking). Look at the confusion matrix and the class balance.",
                         quality_gates.beats_majority_class,
                         applies=lambda recipe: bool(get_task(recipe).label_names())),
              StageCheck("no_overfitting", "The validation loss did not rise above its best (by more than "
                         "checks.max_validation_loss_rise) while the training loss kept falling, and the final "
                         "validation loss is not far above the training loss (checks.max_train_validation_gap). Failing "
                         "means the model memorises its training rows: train fewer epochs, use "
                         "training.early_stopping_patience, add data. WARN: shown, and the export is not promoted "
                         "unless promotion.allow_warnings.", quality_gates.no_overfitting, "WARN"),
              StageCheck("forgetting", "The fine-tuned model's perplexity on a small general-text probe shipped with "
                         "the project (finetune_assets/probes/general_text.jsonl) is at most "
                         "checks.max_general_perplexity_rise above the base model's: tuning on the recipe's data did not "
                         "cost general language (catastrophic forgetting). Failing: lower the learning rate or epochs, "
                         "prefer LoRA. WARN: shown, and the export is not promoted unless promotion.allow_warnings.",
                         quality_gates.forgetting, "WARN", applies=lambda recipe: get_task(recipe).general_text_probe),
          )),
    # 2: adapter/ beside the merged model; method lines in the card. 3: test_rows, rows_key in the ref.
    # 4: the merge check. 5: export_reloads; the card's usage names the folder; every metric in the metadata
    Stage("exported_model", ("finetuned_model", "evaluation_report"), "",
          "The fine-tuned model as a self-contained folder that `transformers.pipeline(\"{pipeline_task}\")` "
          "loads, with its model card; the promotion gate decides whether it replaces the champion.",
          code_version="5", reads=("generation",),
          run=stages.exported_model, finish=gate.gate, kinds=("python", "huggingface"),
          checks=(
              StageCheck("merge_verified", "The export, loaded back from disk, is the model that was trained: logits "
                         "and greedy answers equal to the adapter on its base (the checkpoint for full fine-tuning) on "
                         "test rows, and its tokenizer renders them as training did. Failing means the merge or the "
                         "saved files changed the model: it is never promoted (ERROR); check the adapter, its base and "
                         "the tokenizer, then export again.", quality_gates.recorded("merge_verified")),
              StageCheck("export_reloads", "The exported folder, loaded through its transformers pipeline as a user "
                         "would load it, gives the evaluation report's predictions on a few test rows. Failing means "
                         "what users get is not what was evaluated (a changed or missing file, another label mapping "
                         "or decoding setting): it is never promoted (ERROR); export again.",
                         quality_gates.recorded("export_reloads")),
          )),
)


def _variant_evaluations(recipe: Recipe, log, root, upstream: list[ArtifactRef]):
    """Each sweep variant's evaluation_report on these splits, where it exists."""
    return sweep_report.evaluations(recipe, root, upstream[0], CHAIN["finetuned_model"], CHAIN["evaluation_report"])


SWEEP_REPORT = Stage(
    "sweep_report", ("tokenized_splits",), "sweep.json",
    "Every variant of the recipe's sweep scored on the same test rows, side by side; the best by {metric} "
    "goes on to exported_model.",
    code_version="1", reads=("sweep", "promotion"),
    run=sweep_report.compare, read_inputs=_variant_evaluations, compares="evaluation_report")

CHAIN = {stage.name: stage for stage in (*STAGES, SWEEP_REPORT)}


def stages_of(recipe: Recipe) -> tuple[Stage, ...]:
    """The chain of one recipe: the six stages, and with a ``sweep:`` its comparison before the export."""
    return STAGES if recipe.sweep is None else (*STAGES[:-1], SWEEP_REPORT, STAGES[-1])
