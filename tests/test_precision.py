"""Mixed precision: what ``training.precision`` resolves to on a machine and why, that the resolved
precision reaches the Trainer and the evaluation (seen inside the model's forward pass of a tiny
real BERT), and how it enters the fingerprints."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors import safe_open
from test_layout import python

from finetune_assets.errors import RecipeError
from finetune_assets.inference.evaluation import evaluate_both
from finetune_assets.models import attention, precision
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.pipeline import stages
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.chain import CHAIN
from finetune_assets.tasks.classification import Classification
from finetune_assets.training.trainer import train

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU detection: a CUDA GPU decides first")


@pytest.fixture
def cpu(monkeypatch):
    """A machine without a GPU whose CPU flags the test sets (``cpu(flags)``); no override."""
    monkeypatch.setattr(precision, "cuda_device", lambda: None)
    monkeypatch.delenv(precision.CPU_OVERRIDE, raising=False)
    return lambda flags: monkeypatch.setattr(precision, "cpu_flags", lambda: flags)


def test_auto_resolves_to_fp32_when_hardware_detection_is_forced_off(make_recipe, monkeypatch, cpu):
    cpu({"avx512f", "avx512_bf16", "amx_bf16"})  # a CPU that has bf16 ...
    monkeypatch.setenv(precision.CPU_OVERRIDE, "0")  # ... and the override that says it has not
    chosen = precision.resolve(make_recipe())
    assert (chosen.name, chosen.device) == ("fp32", "cpu")
    assert "FINETUNE_CPU_BF16=0" in chosen.reason
    assert chosen.trainer_arguments() == {"bf16": False, "fp16": False, "use_cpu": True}
    monkeypatch.setenv(precision.CPU_OVERRIDE, "1")
    assert precision.resolve(make_recipe()).name == "bf16"


@pytest.mark.parametrize(
    "flags, name, reason",
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16", "cpu avx512_bf16 detected"),
        ({"avx2", "amx_tile", "amx_bf16"}, "bf16", "cpu amx_bf16 detected"),
        ({"avx2", "avx512f"}, "fp32", "no bf16 support in the cpu: fp32"),
        (None, "fp32", "no /proc/cpuinfo"),
    ],
)
def test_auto_follows_the_cpu_flags_and_says_what_it_detected(make_recipe, cpu, flags, name, reason):
    cpu(flags)
    chosen = precision.resolve(make_recipe())
    assert chosen.name == name and reason in chosen.reason
    assert chosen.metadata() == {"precision": name, "precision_reason": chosen.reason}


def test_explicit_settings_are_kept_and_fp16_on_a_cpu_is_refused(make_recipe, cpu):
    cpu({"avx2"})
    assert precision.resolve(make_recipe(training={"precision": "fp32"})).name == "fp32"
    emulated = precision.resolve(make_recipe(training={"precision": "bf16"}))
    assert emulated.name == "bf16" and "emulated" in emulated.reason
    with pytest.raises(RecipeError, match=r"test_recipe.yaml: training.precision: fp16 needs a CUDA GPU"):
        precision.resolve(make_recipe(training={"precision": "fp16"}))
    with pytest.raises(RecipeError, match=r"training\.precision"):
        make_recipe(training={"precision": "fp8"})


@pytest.mark.parametrize("has_bf16", [True, False])
def test_on_a_cuda_gpu_auto_takes_bf16_or_fp16_with_loss_scaling(make_recipe, monkeypatch, has_bf16):
    """No GPU here: the GPU's name and its bf16 support are what torch would report on one."""
    monkeypatch.setattr(precision, "cuda_device", lambda: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: has_bf16)
    chosen = precision.resolve(make_recipe())
    assert (chosen.name, chosen.device) == (("bf16" if has_bf16 else "fp16"), "cuda")
    assert chosen.reason == ("Tesla T4 supports bf16" if has_bf16 else "Tesla T4 has no bf16: fp16 with loss scaling")
    assert chosen.trainer_arguments() == {"bf16": has_bf16, "fp16": not has_bf16, "use_cpu": False}
    assert precision.resolve(make_recipe(training={"precision": "fp32"})).trainer_arguments()["use_cpu"] is False
    if not has_bf16:
        with pytest.raises(RecipeError, match=r"training\.precision: bf16: Tesla T4 has no bf16"):
            precision.resolve(make_recipe(training={"precision": "bf16"}))


def test_a_bad_override_names_the_variable(make_recipe, monkeypatch, cpu):
    monkeypatch.setenv(precision.CPU_OVERRIDE, "yes")
    with pytest.raises(ValueError, match="FINETUNE_CPU_BF16='yes'"):
        precision.resolve(make_recipe())


@cpu_only
def test_fp16_on_a_cpu_fails_before_any_data_is_read(make_recipe):
    recipe = make_recipe(training={"precision": "fp16"})  # its data.csv does not exist
    with pytest.raises(RecipeError, match="fp16 needs a CUDA GPU"):
        stages.read_raw_rows(recipe, logging.getLogger("test"), recipe.source_file.parent, [])


# --- the resolved precision reaches the Trainer and the evaluation ------------------------------


class WatchedClassification(Classification):
    """The classification family whose models report, from inside their forward pass, whether they
    were training, the dtype the classifier computed in, whether autograd was off, and the dtype of
    its weights."""

    def __init__(self, recipe):
        super().__init__(recipe)
        self.seen = []

    def load_model(self, location, **options):
        model = super().load_model(location, **options)
        model.classifier.register_forward_hook(
            lambda module, args, output: self.seen.append(
                (module.training, output.dtype, torch.is_inference_mode_enabled(), module.weight.dtype)
            )
        )
        return model


SENTENCES = [
    "what a lovely film",
    "a dull and tired plot that never ends",
    "great acting all round",
    "i want my money back now",
    "a warm and funny story",
    "the worst two hours of my year",
]


def tiny_splits(task, model_dir: Path, folder: Path) -> Path:
    rows = Dataset.from_dict({"text": SENTENCES * 4, "label": [1, 0, 1, 0, 1, 0] * 4})
    splits = task.tokenize(
        DatasetDict({"train": rows, "validation": rows.select(range(6)), "test": rows.select(range(6))}),
        load_tokenizer(str(model_dir), task.recipe),
    )
    splits.save_to_disk(str(folder))
    return folder


@cpu_only
@pytest.mark.parametrize("override, dtype", [("1", torch.bfloat16), ("0", torch.float32)])
def test_resolved_precision_reaches_the_trainer_and_the_evaluation(
    tiny_bert, make_recipe, tmp_path, monkeypatch, caplog, override, dtype
):
    monkeypatch.setenv(precision.CPU_OVERRIDE, override)
    recipe = make_recipe(
        base_model=str(tiny_bert), training={"batch_size": 8, "eval_batch_size": 4, "logging_steps": 1}
    )
    task = WatchedClassification(recipe)
    splits = tiny_splits(task, tiny_bert, tmp_path / "splits")
    log = logging.getLogger("precision-test")
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    with caplog.at_level(logging.INFO, logger="precision-test"):
        figures = train(task, splits, checkpoint, log)
    numerics = precision.resolve(recipe)
    assert numerics.name == figures["precision"] == ("bf16" if override == "1" else "fp32")
    assert figures["attention"] == (attention.NAME if override == "1" else "sdpa"), "short bf16 rows: two products"
    assert figures["frozen_layers_16bit"] == 0, "full fine-tuning freezes nothing"
    assert figures["logits_at_targets_only"] is False, "a classifier has no vocabulary to skip"
    # embeddings, attention, its output, the feed-forward's output, the classifier: 16-bit draws on a CPU
    assert figures["dropout_layers_16bit_draws"] == 5
    # the Trainer's own arguments, as its progress callback reads them at the start of training
    started = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("training:"))
    assert started.endswith("bf16 mixed precision" if override == "1" else "float32")
    training = {(d, weights) for is_training, d, _, weights in task.seen if is_training}
    assert training == {(dtype, torch.float32)}, "training computes in the resolved precision, float32 weights"
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as weights:
        assert weights.get_tensor("classifier.weight").dtype == torch.float32, "weights are saved in float32"

    task.seen.clear()
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    evaluate_both(task, splits, checkpoint, report_dir, log)
    assert task.seen and set(task.seen) == {(False, dtype, True, dtype)}, (
        "base and tuned model evaluated in the resolved precision, under inference_mode, with their "
        "weights cast to bf16 where it is native"
    )
    report = json.loads((report_dir / "report.json").read_text())
    assert (report["precision"], report["precision_reason"]) == (numerics.name, numerics.reason)
    assert report["inference_precision"] == ("bf16 weights" if override == "1" else "fp32 weights")


# --- fingerprints --------------------------------------------------------------------------------


def test_the_resolved_precision_is_part_of_the_training_and_evaluation_fingerprints(make_recipe, monkeypatch, cpu):
    cpu({"avx512_bf16"})
    recipe = make_recipe()
    upstream = [ArtifactRef("x", "upstream-fingerprint")]
    on_bf16 = {name: stage.fingerprint(recipe, upstream) for name, stage in CHAIN.items()}
    monkeypatch.setenv(precision.CPU_OVERRIDE, "0")  # the same recipe on a machine without bf16
    on_fp32 = {name: stage.fingerprint(recipe, upstream) for name, stage in CHAIN.items()}
    changed = {name for name in CHAIN if on_bf16[name] != on_fp32[name]}
    assert changed == {"finetuned_model", "evaluation_report"}
    explicit = make_recipe(training={"precision": "fp32"})
    assert CHAIN["finetuned_model"].fingerprint(explicit, upstream) != on_fp32["finetuned_model"], (
        "the recipe's setting is part of the training section too"
    )
    forced = make_recipe(training={"precision": "bf16"})  # bf16 on a CPU that emulates it ...
    emulated = {name: CHAIN[name].fingerprint(forced, upstream) for name in ("finetuned_model", "evaluation_report")}
    monkeypatch.setenv(precision.CPU_OVERRIDE, "1")  # ... and on one that has it
    native = {name: CHAIN[name].fingerprint(forced, upstream) for name in ("finetuned_model", "evaluation_report")}
    assert emulated["finetuned_model"] == native["finetuned_model"], "both train under bf16 autocast"
    assert emulated["evaluation_report"] != native["evaluation_report"], (
        "the evaluation names its weights' dtype: float32 where bf16 is emulated, bf16 where native"
    )


@pytest.mark.skipif(precision._torch_built_for_gpu(), reason="a GPU build of torch is asked about its GPU")
def test_resolving_the_precision_does_not_import_torch(tmp_path):
    """A fully cached run computes every fingerprint; on a CPU-only torch that must stay torch-free."""
    (tmp_path / "r.yaml").write_text("task: classification\nbase_model: m\ndataset: {source: d.csv, labels: [a, b]}\n")
    assert (
        python(
            "import sys; from finetune_assets.recipes import load_recipe; "
            "from finetune_assets.pipeline.chain import CHAIN; "
            f"r = load_recipe({str(tmp_path / 'r.yaml')!r}); CHAIN['finetuned_model'].fingerprint(r, []); "
            "print('torch' in sys.modules)"
        )
        == "False"
    )
