"""Whether a 4-bit base (``method: qlora``) can train on the device that trains, asked of
bitsandbytes itself rather than inferred from "is there a CUDA GPU".

bitsandbytes is multi-backend: the device types it has kernels for are listed in its
``supported_torch_devices`` (the CPU among them in the versions this project installs), and
``bitsandbytes.nn.Linear4bit`` quantizes, multiplies and back-propagates on each. A listed device
can still lack a 4-bit kernel in an older or narrower build, so :func:`four_bit_support` also runs
one real step: a 64x64 ``Linear4bit`` with the recipe's quant type, double quantization and
compute dtype, forward and backward on the device. The step takes milliseconds; importing
bitsandbytes takes seconds, which is why only ``qlora`` recipes ask. The answer is kept for the
process.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe


@dataclass(frozen=True)
class FourBit:
    """Whether 4-bit weights train on ``device`` (``cpu`` or ``cuda``), and what said so."""

    device: str
    runs: bool
    reason: str


def training_device() -> str:
    """The device the training process trains on: the first CUDA GPU where there is one (as the
    Trainer picks), else the CPU."""
    from finetune_assets.models.precision import cuda_device

    return "cuda" if cuda_device() else "cpu"


def compute_dtype(recipe: Recipe) -> str:
    """The dtype the 4-bit weights are dequantized to for each product: ``quantization.compute_dtype``,
    or for ``auto`` the one the resolved ``training.precision`` computes in (bfloat16 where the
    hardware multiplies bf16, float16 on a GPU without it, else float32: on a CPU without native
    bf16, bfloat16 products are emulated and made QLoRA's steps several times slower)."""
    setting = recipe.quantization.compute_dtype
    if setting != "auto":
        return setting
    from finetune_assets.models.precision import resolve

    return {"bf16": "bfloat16", "fp16": "float16"}.get(resolve(recipe).name, "float32")


def four_bit_support(recipe: Recipe) -> FourBit:
    """Whether the recipe's 4-bit settings train on the training device."""
    spec = recipe.quantization
    return _probe(training_device(), spec.quant_type, spec.double_quant, compute_dtype(recipe))


@functools.cache
def _probe(device: str, quant_type: str, double_quant: bool, compute_dtype: str) -> FourBit:
    try:
        import bitsandbytes as bnb
    except ImportError as error:
        return FourBit(device, False, f"bitsandbytes cannot be imported ({error})")
    version = f"bitsandbytes {bnb.__version__}"
    listed = getattr(bnb, "supported_torch_devices", {"cuda"})  # before multi-backend: CUDA only
    if device not in listed:
        return FourBit(device, False, f"{version} has no {device} backend (it lists {', '.join(sorted(listed))})")
    try:
        _one_step(bnb, device, quant_type, double_quant, compute_dtype)
    except Exception as error:  # whatever the backend raises: the device cannot train 4-bit weights
        return FourBit(device, False, f"{version}: a 4-bit layer failed on {device}: {type(error).__name__}: {error}")
    return FourBit(device, True, f"{version}: a {quant_type} 4-bit layer trained on {device}")


def _one_step(bnb, device: str, quant_type: str, double_quant: bool, compute_dtype: str) -> None:
    """Forward and backward through one small 4-bit layer; raises where the device cannot."""
    import torch

    dtype = getattr(torch, compute_dtype)
    layer = bnb.nn.Linear4bit(
        64, 64, bias=False, compute_dtype=dtype, quant_type=quant_type, compress_statistics=double_quant
    ).to(device)
    if getattr(layer.weight, "quant_state", None) is None:
        raise RuntimeError("the weight was not quantized")
    inputs = torch.randn(4, 64, device=device, dtype=dtype, requires_grad=True)
    layer(inputs).float().sum().backward()
    if inputs.grad is None or not torch.isfinite(inputs.grad).all():
        raise RuntimeError("no finite gradient through the 4-bit layer")


def four_bit_layers(model) -> int:
    """How many ``Linear4bit`` layers ``model`` holds: the proof that 4-bit weights were trained on."""
    bnb = sys.modules.get("bitsandbytes")
    if bnb is None:
        return 0
    return sum(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())


def keep_training_layout(model) -> None:
    """Keep every ``Linear4bit`` of ``model`` in the layout it trains in. On a CPU with AVX-512 BF16,
    bitsandbytes 0.50 repacks a layer's 4-bit weights for its inference kernel, for good, the first
    time the layer runs in eval mode without gradients, which the Trainer's evaluation during
    training does: the repack fails on a layer narrower than a quantization block (the tests' tiny
    Llama: "shape '[32, 0]' is invalid"), and the training steps after it would run on the inference
    layout. The 4-bit weights then dequantize for each product, in evaluation as in training."""
    bnb = sys.modules.get("bitsandbytes")
    for module in model.modules() if bnb else ():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
