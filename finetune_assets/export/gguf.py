"""GGUF files of the merged export, for llama.cpp and Ollama (``publish.gguf``; decoder-only models).

Each weight type of ``publish.gguf.types`` becomes ``<recipe>-<type>.gguf`` in the export folder,
written by llama.cpp's own converter (:mod:`.llama_cpp`) from the merged safetensors, tokenizer and
chat template that folder already holds; an Ollama ``Modelfile`` goes beside them
(:mod:`.modelfile`). :func:`require_decoder_only` refuses a recipe whose model GGUF cannot hold
before any training is paid for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from finetune_assets.errors import RecipeError
from finetune_assets.export import llama_cpp, modelfile
from finetune_assets.recipes import Recipe


def file_name(recipe: Recipe, weight_type: str) -> str:
    return f"{recipe.name}-{weight_type}.gguf"


def require_decoder_only(recipe: Recipe, base_location: str) -> None:
    """A recipe with ``publish.gguf`` must fine-tune a causal language model (and the converter
    must be in place); else a :class:`RecipeError` naming ``publish.gguf``."""
    if recipe.publish.gguf is None:
        return
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_location, trust_remote_code=recipe.trust_remote_code)
    causal = recipe.task in ("instruction", "summarization") and not config.is_encoder_decoder
    if not causal or not any(a.endswith("ForCausalLM") for a in config.architectures or []):
        raise RecipeError(
            f"recipe {recipe.name}: publish.gguf needs a decoder-only causal language model, but task "
            f"{recipe.task!r} fine-tunes {', '.join(config.architectures or [config.model_type])}; "
            "remove publish.gguf or choose a causal LM base model"
        )
    llama_cpp.converter()


def write(recipe: Recipe, folder: Path, tokenizer) -> list[Path]:
    """The GGUF files (one per type) and, if asked, the Modelfile, written into the export ``folder``;
    ``tokenizer``: the export's, whose chat template the Modelfile repeats."""
    spec = recipe.publish.gguf
    files = []
    for weight_type in spec.types:
        files.append(folder / file_name(recipe, weight_type))
        llama_cpp.convert(folder, files[-1], weight_type)
    if spec.ollama:
        modelfile.write(folder, served_file(recipe).name, tokenizer, recipe.generation)
    return files


def served_file(recipe: Recipe) -> Path:
    """The file Ollama is pointed at: the q8_0 one when written, else the first."""
    types = recipe.publish.gguf.types
    return Path(file_name(recipe, "q8_0" if "q8_0" in types else types[0]))


def describe(files: list[Path]) -> dict:
    """Each file's size and sha256, for the asset's metadata."""
    return {
        path.name: {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for path in files
    }
