"""The recipe schema: what one YAML file may say about one fine-tuning job.

Plain pydantic models with ``extra="forbid"``, so a typo in a key is an error, not a silently
ignored setting; :mod:`finetune_assets.recipes.loading` turns validation errors into messages that
name the file and the dotted key. The ``task:`` choices come from the task registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from finetune_assets.tasks import TASK_NAMES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where the rows come from and how their columns map onto the task's columns."""

    source: str = Field(description="hub dataset id, local csv/jsonl/parquet path, or package:<pkg>/<path>")
    format: Literal["csv", "jsonl", "json", "parquet", "chatterbot"] | None = Field(
        None, description="default: from the file suffix; chatterbot: a folder of ChatterBot corpus YAML")
    encoding: str = "utf-8"
    hub_config: str | None = None
    hub_split: str | None = Field(None, description="hub split expression, e.g. 'train+test'; default all")
    columns: dict[str, str] = Field(default_factory=dict, description="task column -> source column")
    labels: list[str] | None = Field(None, description="label names in id order (classification)")
    label_aliases: dict[str, str] = Field(default_factory=dict, description="raw value -> label name")
    drop_labels: list[str] = Field(default_factory=list, description="raw label values to leave out")
    on_bad_lines: Literal["error", "skip"] = Field(
        "error", description="a malformed csv/jsonl line: stop with its line number, or skip it with a receipt")


class SplitSpec(_Strict):
    validation: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _leaves_training_data(self) -> "SplitSpec":
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be below 1 so that rows remain for training")
        return self


class LoraSpec(_Strict):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, description="default: peft's choice for the architecture")


class QuantizationSpec(_Strict):
    """4-bit loading for ``method: qlora`` (bitsandbytes NF4); needs a CUDA GPU."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    cpu_fallback: bool = Field(False, description="without CUDA, train plain LoRA instead of failing")


class GenerationSpec(_Strict):
    """Decoding settings, used in evaluation and written to the export's generation_config."""

    max_new_tokens: int = Field(64, gt=0)
    num_beams: int = Field(1, gt=0)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    no_repeat_ngram_size: int = Field(0, ge=0)
    length_penalty: float = 1.0


class EvaluationSpec(_Strict):
    num_examples: int = Field(8, ge=0, description="test rows shown side by side in the report")
    bleu: bool = Field(False, description="also compute sacreBLEU (generation tasks)")


class TrainingSpec(_Strict):
    epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(16, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_length: int = Field(128, gt=0)
    max_target_length: int = Field(128, gt=0, description="summary tokens (summarization)")
    input_prefix: str = Field("", description='prepended to every input, e.g. "summarize: " for T5')
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 mixed precision where the GPU or CPU has it, else fp32 "
                            "(fp16 on a GPU without bf16); see finetune_assets.models.precision")
    weight_decay: float = Field(0.0, ge=0)
    warmup: float = Field(0.0, ge=0, description="fraction of steps (<1) or a step count")
    max_train_samples: int | None = Field(None, gt=0)
    max_eval_samples: int | None = Field(None, gt=0)
    early_stopping_patience: int | None = Field(None, gt=0)
    group_by_length: bool = True
    logging_steps: int = Field(10, gt=0)
    save_steps: float = Field(0.1, gt=0, description="checkpoint interval: optimizer steps, or below 1 a "
                              "fraction of the run; with early stopping, validation runs at each checkpoint")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept while training (the best one too)")
    seed: int = 42
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description='experiment trackers the Trainer reports to: a list, one name, or "none" '
        "(the default); not part of the fingerprint: where figures are reported does not change the model")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_none(cls, value):
        if value == "none" or value is None:
            return []
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _whole_steps(self) -> "TrainingSpec":
        if self.save_steps >= 1 and self.save_steps != int(self.save_steps):
            raise ValueError("save_steps is a whole number of steps, or a fraction of the run below 1")
        return self


class KubernetesSpec(_Strict):
    """What the training pod asks of a cluster when training runs on Kubernetes (the
    ``KubernetesTraining`` resource); the image and volume are the deployment's, set on the resource."""

    gpus: int = Field(0, ge=0, description="nvidia.com/gpu requested (and tolerated) for the pod")
    cpu: str | None = Field(None, description='CPU request, e.g. "8"')
    memory: str | None = Field(None, description='memory request and limit, e.g. "32Gi"')
    node_selector: dict[str, str] = Field(default_factory=dict)


class ComputeSpec(_Strict):
    """Where and how the training process runs; none of it changes the trained model's fingerprint
    (``training.batch_size`` is the batch of one optimizer step, split over the processes)."""

    launcher: Literal["local", "torchrun", "accelerate"] = Field(
        "local", description="local: one process; torchrun: DDP over processes; accelerate: accelerate launch")
    processes: int = Field(1, gt=0, description="torchrun: processes (one per device) on this machine")
    accelerate_config: str | None = Field(
        None, description="accelerate: its config file (FSDP, DeepSpeed...), relative to the recipe's folder")
    pool: str = Field("training", description="Dagster concurrency pool of the training asset")
    retries: int = Field(2, ge=0, description="times Dagster retries a failed training (it resumes)")
    retry_delay_seconds: float = Field(10.0, ge=0)
    kubernetes: KubernetesSpec = KubernetesSpec()

    @model_validator(mode="after")
    def _launcher_settings(self) -> "ComputeSpec":
        if self.processes > 1 and self.launcher != "torchrun":
            raise ValueError(f"processes: {self.processes} needs launcher: torchrun (accelerate takes its "
                             "process count from its config file)")
        if self.launcher == "accelerate" and not self.accelerate_config:
            raise ValueError("launcher: accelerate needs accelerate_config, the path of its config file "
                             "(write one with `accelerate config --config_file <path>`)")
        return self


class CleaningSpec(_Strict):
    """Each cleaning rule, switchable. Text rules apply to every text column of the task."""

    unicode_normalization: Literal["NFC", "NFKC"] | None = "NFKC"
    strip_html: bool = True
    normalize_whitespace: bool = True
    drop_empty: bool = True
    drop_duplicates: bool = True
    drop_near_duplicates: bool = Field(True, description="same text ignoring case, punctuation, spacing")
    drop_conflicting_duplicates: bool = True
    min_chars: int = Field(1, ge=0)
    max_chars: int | None = Field(20_000, gt=0)


class ChecksSpec(_Strict):
    """Thresholds of the data-quality checks and the model quality gates; see README "Data quality"
    and "Quality gates"."""

    min_rows_per_split: int = Field(10, ge=1, description="ERROR below this many rows in any split")
    max_class_ratio: float = Field(10.0, ge=1, description="WARN when largest/smallest class exceeds it")
    max_truncation_rate: float = Field(0.05, ge=0, le=1, description="WARN above this share truncated")
    max_duplicate_rate: float = Field(0.1, ge=0, le=1, description="WARN above this share of duplicates")
    leakage: Literal["error", "warn"] = Field("error", description="severity of train/test overlap")
    # Model quality gates (checks/quality_gates.py); see README "Quality gates".
    min_gain_over_base: float = Field(
        0.0, description="beats_base_model (ERROR): the tuned model must beat the base model on the promotion "
                         "metric by more than this, in the metric's units (a negative value tolerates a worse model)")
    min_accuracy_over_majority: float = Field(
        0.0, description="beats_majority_class (ERROR): test accuracy must exceed the share of the most common "
                         "test label by more than this (0.02 = two points)")
    max_validation_loss_rise: float = Field(
        0.05, ge=0, description="no_overfitting (WARN): how far the last validation loss may rise above its best, "
                                "as a fraction of the best, while the training loss keeps falling")
    max_train_validation_gap: float = Field(
        0.5, ge=0, description="no_overfitting (WARN): how far the final validation loss may exceed the final "
                               "training loss, in nats")
    max_general_perplexity_rise: float = Field(
        0.2, ge=0, description="forgetting (WARN): how far the tuned model's perplexity on the shipped general-text "
                               "probe may rise above the base model's, as a fraction (0.2 = 20%)")
    min_loss_decrease: float = Field(
        0.0, ge=0, lt=1, description="loss_decreased (WARN): the training loss over the last quarter of logged "
                                     "steps must be below the first quarter's by more than this fraction")


class PromotionSpec(_Strict):
    """When a new export replaces the current champion (see promotion/gate.py)."""

    metric: str | None = Field(None, description="default: the task's primary metric")
    higher_is_better: bool | None = Field(None, description="default: the task's direction")
    min_improvement: float = Field(0.0, ge=0)
    # 100 rows: below that one row moves accuracy by more than a point, and two models' scores
    # differ by chance more often than by skill.
    min_test_rows: int = Field(100, ge=1, description="a smaller test split never promotes")
    allow_warnings: bool = Field(False, description="failed WARN checks on the lineage do not block promotion")


class ScheduleSpec(_Strict):
    """Periodic retraining; the schedule is created stopped and started from the UI."""

    cron: str
    timezone: str = "UTC"


class AutomationSpec(_Strict):
    """Dagster automation conditions on the recipe's assets, evaluated by its ``<recipe>_automation``
    sensor (created stopped); see finetune_assets/defs/automation.py."""

    data: Literal["eager"] | None = Field(
        None, description="eager: clean_dataset and tokenized_splits follow raw_dataset whenever it is materialized")
    retrain: ScheduleSpec | None = Field(
        None, description="finetuned_model onwards once per cron period, when every blocking check upstream passed")


# Settings that change how a run is watched, not what it makes: left out of every fingerprint and
# code version, so choosing a tracker neither retrains nor marks anything stale.
NOT_FINGERPRINTED = {"training": {"report_to"}}


class Recipe(_Strict):
    """A whole fine-tuning job. ``name`` comes from the file name, never from inside the file."""

    name: str
    source_file: Path
    description: str = ""
    task: Literal[TASK_NAMES]
    base_model: str
    trust_remote_code: bool = False
    dataset: DatasetSpec
    cleaning: CleaningSpec = CleaningSpec()
    checks: ChecksSpec = ChecksSpec()
    promotion: PromotionSpec = PromotionSpec()
    schedule: ScheduleSpec | None = None
    automation: AutomationSpec | None = None
    force_recompute: bool = Field(False, description="ignore cached artifacts on every run")
    splits: SplitSpec = SplitSpec()
    method: Literal["full", "lora", "qlora"] = "full"
    lora: LoraSpec = LoraSpec()
    quantization: QuantizationSpec = QuantizationSpec()
    training: TrainingSpec = TrainingSpec()
    generation: GenerationSpec = GenerationSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    compute: ComputeSpec = ComputeSpec()
    sweep: Any = Field(None, description="variants trained side by side: a grid {training.learning_rate: "
                       "[5.0e-5, 1.0e-4], method: [full, lora]} or a list of overrides; see recipes/sweep.py")
    variant: str = Field("", description="the sweep variant this recipe is (set by the sweep, never in a file)")

    def section(self, *keys: str) -> dict:
        """The settings under ``keys`` (dotted for nested, e.g. ``training.max_length``) as plain
        data: what a stage's fingerprint depends on."""
        data = self.model_dump(mode="json", exclude={"name": True, "source_file": True, "description": True,
                                                        **NOT_FINGERPRINTED})
        picked = {}
        for key in keys:
            value = data
            for part in key.split("."):
                value = value[part]
            picked[key] = value
        return picked
