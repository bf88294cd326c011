"""How the Trainer computes a step: the AdamW kernel, and whether the model is ``torch.compile``d.

Why this module: both choices move the step time without changing what the run learns beyond
float rounding, and both depend on the machine, so they are decided per run here and recorded with
their reason in the training figures, as :mod:`finetune_assets.models.precision` records its own.

- AdamW: torch's fused kernel (one kernel for every parameter's update, Trainer
  ``optim="adamw_torch_fused"``) wherever torch has it for the device (CPU, CUDA, MPS, XPU in torch
  2.4 and later); elsewhere the plain ``adamw_torch``. On the 2-core AMD EPYC it cut MiniLM's full
  fine-tuning step (``benchmarks/compute_efficiency.py``); LoRA's few trainable weights make the
  update a small share of the step either way.
- ``torch.compile``: ``training.compile`` is ``auto`` (the default), ``true`` or ``false``. Compiling
  costs seconds once (and again for each new batch shape until it turns dynamic), then may save
  some on every step, so ``auto`` compiles only where the saving measured on this kind of device,
  times the run's optimizer steps, repays the compile time twice over for every workload
  measured there (:data:`MEASURED`). Where no
  figures exist for the device, or the compiled step was not faster, ``auto`` stays off and says so.
  The setting is not part of the ``finetuned_model`` fingerprint: compiled and eager kernels compute
  the same model up to float rounding (the tests hold them to the same validation loss), so forcing
  compile on or off does not retrain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAYBACK_MARGIN = 2.0  # compile only where the run's steps repay the compile time this many times over


@dataclass(frozen=True)
class Measured:
    """One measurement of ``torch.compile`` on a device kind: the compile seconds (first steps),
    and the eager and compiled seconds of one steady optimizer step, on the model ``where`` names."""

    compile_seconds: float
    eager_step_seconds: float
    compiled_step_seconds: float
    where: str

    def payback_steps(self) -> float:
        """Optimizer steps whose savings equal the compile time (infinite where nothing is saved)."""
        saving = self.eager_step_seconds - self.compiled_step_seconds
        return math.inf if saving <= 0 else self.compile_seconds / saving


MEASURED = {  # per device kind, every workload measured; auto goes by the slowest to pay back (the first, if tied)
    "cpu": (
        Measured(  # bf16 mixed precision, 40 steps each way; eager with dropout's 16-bit draws
            compile_seconds=75.8,
            eager_step_seconds=1.133,
            compiled_step_seconds=1.351,
            where="MiniLM batch 64, bf16, on an AMD EPYC (Zen 4), 2 cores, quiet, 2026-12-07",
        ),
        Measured(
            compile_seconds=21.0,
            eager_step_seconds=1.05,
            compiled_step_seconds=1.731,
            where="SmolLM2-135M LoRA batch 4, bf16, on an AMD EPYC (Zen 4), 2 cores, quiet, 2026-12-07",
        ),
        Measured(  # float32: no native bf16 there
            compile_seconds=237.0,
            eager_step_seconds=7.6,
            compiled_step_seconds=11.3,
            where="MiniLM batch 64 on an AMD EPYC (Zen 3), 2 cores, machine not quiet, 2026-12-06",
        ),
        Measured(
            compile_seconds=15.8,
            eager_step_seconds=2.07,
            compiled_step_seconds=34.3,  # new batch lengths recompile: the first steps pay it again
            where="SmolLM2-135M LoRA batch 4 on an AMD EPYC (Zen 3), 2 cores, machine not quiet, 2026-12-06",
        ),
    ),
}


@dataclass(frozen=True)
class Choice:
    """One compute choice as the run takes it, and why."""

    value: str | bool
    reason: str


def optimizer(device: str) -> Choice:
    """The Trainer's ``optim``: the fused AdamW where torch has it for ``device``."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    if device in _get_fused_kernels_supported_devices():
        return Choice("adamw_torch_fused", f"torch has a fused AdamW for {device}")
    return Choice("adamw_torch", f"torch has no fused AdamW for {device}")


def compile_model(setting: str | bool, device: str, steps: int) -> Choice:
    """Whether to ``torch.compile`` the model for a run of ``steps`` optimizer steps on ``device``."""
    if setting != "auto":
        return Choice(bool(setting), "set by the recipe")
    if device not in MEASURED:
        return Choice(False, f"auto: no compile figures measured on {device}; training.compile: true forces it")
    measured = max(MEASURED[device], key=Measured.payback_steps)  # the workload slowest to repay it
    payback = measured.payback_steps()
    if math.isinf(payback):
        return Choice(
            False,
            f"auto: never pays back on {device}: compile took {measured.compile_seconds:g} s and a compiled "
            f"step {measured.compiled_step_seconds:g} s against {measured.eager_step_seconds:g} s eager "
            f"({measured.where}; benchmarks/compute_efficiency.py --compile)",
        )
    needed = math.ceil(payback * PAYBACK_MARGIN)
    return Choice(
        steps >= needed,
        f"auto: {steps} optimizer steps against {needed} needed to repay the compile time twice over "
        f"({measured.where})",
    )


def optimizer_steps(rows: int, batch_size: int, accumulation: int, epochs: float) -> int:
    """The optimizer steps a run of ``rows`` training rows takes, as the Trainer counts them up to
    its rounding of a last partial accumulation: enough to judge whether compile can pay back."""
    return math.ceil(math.ceil(rows / batch_size) / accumulation * epochs)


def metadata(optim: Choice, compiled: Choice) -> dict:
    """What ``training_figures.json`` and the asset metadata record of both choices."""
    return {
        "optimizer": optim.value,
        "optimizer_reason": optim.reason,
        "torch_compile": compiled.value,
        "torch_compile_reason": compiled.reason,
    }
