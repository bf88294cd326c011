"""The numeric precision training, evaluation and generation run in on this machine, and why.

A recipe's ``training.precision`` is ``auto`` (the default), ``fp32``, ``bf16`` or ``fp16``.
``auto`` picks bf16 mixed precision where the hardware multiplies bf16 natively: a CUDA GPU with
bf16 (Ampere and later), or a CPU with AVX-512 BF16 or AMX-BF16 instructions, where bf16 matrix
products run several times faster than float32. A CUDA GPU without bf16 gets fp16 with the
Trainer's loss scaler; any other machine float32. Mixed precision is autocast: weights, optimizer
state and the saved checkpoint stay float32, matrix products run in 16 bits.

Inference (evaluation, sample answers, self-play) goes further where the 16-bit type is native:
the weights themselves are cast to it (:meth:`Precision.for_inference`). Decoding one token reads
every weight once, so half the bytes is most of the speed-up (``benchmarks/generation.py`` measures it). A recipe that forces bf16 on a CPU without it
keeps float32 weights under autocast, since emulated bf16 weights decode about three times slower.

The choice is made at run time by the machine that runs the stage, recorded with its reason
(what was detected) in the metadata and the model card, and its name joins the fingerprints of
``finetuned_model`` and ``evaluation_report``: a checkpoint trained in bf16 is never reused as an
fp32 run. Detection reads ``/proc/cpuinfo`` and ``torch/version.py`` rather than importing torch
(1-2 s), so a fully cached run stays torch-free on machines without a GPU build of torch.
``FINETUNE_CPU_BF16=0`` or ``1`` overrides the CPU detection (for a CPU it gets wrong, and tests).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from finetune_assets.errors import RecipeError

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of native bf16 matrix instructions
CPU_OVERRIDE = "FINETUNE_CPU_BF16"


@dataclass(frozen=True)
class Precision:
    """What a stage runs in: ``fp32``, ``bf16`` or ``fp16``, on ``cpu`` or ``cuda``, and why."""

    name: str
    device: str
    reason: str
    native: bool = True  # the hardware multiplies in ``name`` itself (false: bf16 forced, emulated)

    def trainer_arguments(self) -> dict:
        """The Hugging Face ``TrainingArguments`` that make the Trainer (through accelerate) autocast
        to this precision; fp16 gets accelerate's gradient scaler."""
        return {"bf16": self.name == "bf16", "fp16": self.name == "fp16", "use_cpu": self.device == "cpu"}

    @contextlib.contextmanager
    def inference(self):
        """No autograd (``torch.inference_mode``) and autocast to this precision: what evaluation and
        generation run under, so they compute in the precision training used."""
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)
        with (
            torch.inference_mode(),
            torch.autocast(self.device, dtype=dtype or torch.bfloat16, enabled=dtype is not None),
        ):
            yield

    @property
    def inference_weights(self) -> str:
        """The dtype evaluation and generation hold the weights in: the 16-bit type where the hardware
        runs it natively, else fp32. Part of the evaluation's fingerprint."""
        return self.name if self.native else "fp32"

    def inference_dtype(self):
        """:attr:`inference_weights` as a torch dtype (what ``from_pretrained(dtype=...)`` takes)."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.inference_weights, torch.float32)

    def for_inference(self, model):
        """``model`` (in place) with its weights in :attr:`inference_weights`; a 4-bit (QLoRA)
        model keeps its own, which bitsandbytes cannot cast."""
        if getattr(model, "hf_quantizer", None) is not None:
            return model
        return model.to(self.inference_dtype())

    def for_training(self, model) -> int:
        """Hold the frozen plain ``Linear`` layers of ``model`` (a LoRA base's) in the 16-bit type this
        precision autocasts to, where the hardware runs it natively; how many layers it cast.

        Why: autocast caches its 16-bit copy only of weights that take gradients, so every forward
        pass (two per step under activation checkpointing) copied SmolLM2-135M's whole frozen base
        again, about a tenth of a LoRA step on a CPU (``benchmarks/compute_efficiency.py``). Held in
        16 bits, the layers multiply exactly as before (autocast's cast rounds the same way) and
        their memory halves. Weights shared with the input embeddings stay (a tied LM head: the
        embedding lookup is not autocast, so casting it would change the hidden states), as do 4-bit
        layers, trainable ones and float32 runs."""
        import torch

        if self.name == "fp32" or not self.native:
            return 0
        embeddings = model.get_input_embeddings().weight
        frozen = [
            layer
            for layer in model.modules()
            if type(layer) is torch.nn.Linear
            and not any(parameter.requires_grad for parameter in layer.parameters())
            and layer.weight is not embeddings
        ]
        for layer in frozen:
            layer.to(self.inference_dtype())
        return len(frozen)

    def metadata(self) -> dict[str, str]:
        """What the asset metadata, ``report.json`` and ``training_figures.json`` record."""
        return {"precision": self.name, "precision_reason": self.reason}

    def scoring_key(self) -> str:
        """How an evaluation computed, for its fingerprint and the champion's ``rows_key``: the
        precision and the weights' dtype (bf16 forced on an emulating CPU trains alike, scores otherwise)."""
        return f"precision={self.name},inference={self.inference_weights}"

    def inference_metadata(self) -> dict[str, str]:
        """What the evaluation records besides :meth:`metadata`: the weights' dtype it scored in."""
        return {**self.metadata(), "inference_precision": f"{self.inference_weights} weights"}

    def __str__(self) -> str:
        kind = "float32" if self.name == "fp32" else f"{self.name} mixed precision"
        return f"{kind} on {self.device} ({self.reason})"


def resolve(recipe: Recipe) -> Precision:
    """What the recipe's ``training.precision`` means on this machine. Refuses what cannot work
    here (fp16 on a CPU, bf16 on a GPU without it) with an error naming the file and the setting."""
    setting = recipe.training.precision
    key = f"{recipe.source_file.name}: training.precision: {setting}"
    gpu = cuda_device()
    if gpu is not None:
        return _on_cuda(setting, gpu, key)
    if setting == "fp16":
        raise RecipeError(
            f"{key} needs a CUDA GPU: on a CPU, accelerate does not autocast to fp16, so it would "
            "silently train in float32. Set training.precision: auto (bf16 where the CPU has it) "
            "or bf16."
        )
    if setting == "fp32":
        return Precision("fp32", "cpu", "set by the recipe")
    native, detected = cpu_bf16()
    if setting == "bf16":
        return Precision(
            "bf16",
            "cpu",
            f"set by the recipe; {detected}" + ("" if native else ": bf16 is emulated here and slower than float32"),
            native,
        )
    return Precision("bf16", "cpu", detected) if native else Precision("fp32", "cpu", f"{detected}: fp32")


def _on_cuda(setting: str, gpu: str, key: str) -> Precision:
    import torch

    has_bf16 = torch.cuda.is_bf16_supported()
    if setting == "auto":
        if has_bf16:
            return Precision("bf16", "cuda", f"{gpu} supports bf16")
        return Precision("fp16", "cuda", f"{gpu} has no bf16: fp16 with loss scaling")
    if setting == "bf16" and not has_bf16:
        raise RecipeError(
            f"{key}: {gpu} has no bf16. Set training.precision: auto (fp16 with loss scaling here) or fp16."
        )
    return Precision(setting, "cuda", "set by the recipe")


def cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU multiplies bf16 natively, and what was detected (for the reason)."""
    forced = os.environ.get(CPU_OVERRIDE)
    if forced is not None:
        if forced not in ("0", "1"):
            raise ValueError(
                f"{CPU_OVERRIDE}={forced!r}: set it to 1 (the CPU has native bf16), 0 (it has "
                "not) or unset it to read the CPU's flags"
            )
        return forced == "1", f"{CPU_OVERRIDE}={forced}" + (
            " (bf16 forced on)" if forced == "1" else " (bf16 detection off)"
        )
    flags = cpu_flags()
    if flags is None:
        return False, "no /proc/cpuinfo to read the CPU's bf16 support from"
    found = [flag for flag in CPU_BF16_FLAGS if flag in flags]
    return (True, f"cpu {found[0]} detected") if found else (False, "no bf16 support in the cpu")


def cpu_flags() -> set[str] | None:
    """The instruction-set flags of the first CPU in ``/proc/cpuinfo`` (Linux), or None."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else None


def cuda_device() -> str | None:
    """The first CUDA GPU's name, or None. Torch is asked only when the installed build could see
    a GPU at all (or is already loaded): a CPU-only build answers from its ``version.py``."""
    if "torch" not in sys.modules and not _torch_built_for_gpu():
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _torch_built_for_gpu() -> bool:
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return True  # an unusual layout: let torch answer
    versions = dict(re.findall(r"^(cuda|hip)\b[^=\n]*=\s*(.+)$", text, re.MULTILINE))
    return not versions or any(value.strip() != "None" for value in versions.values())
