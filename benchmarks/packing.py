"""Packed against unpacked causal-LM training on ``chatbot_sft``: tokens/s, padding share, and the
loss of the same rows both ways.

Why: ChatterBot pairs are short and uneven, and unpacked training pads every conversation to its
batch's longest; ``training.packing: true`` puts whole examples end to end in rows of
``max_length`` instead (``finetune_assets/tasks/causal_lm/packing.py``). This measures what that buys
on the recipe as shipped: SmolLM2-135M-Instruct (the GGUF copy), LoRA r=16, batch 4, max length 96,
activation checkpointing on, the recipe's tokenized ChatterBot rows (made once by the pipeline's
own data stages).

Both sides run the project's own ``finetune_assets.training.trainer.train`` on the same training rows
for one epoch, in this process, alternating (``--repeats``; each side's fastest run is kept).
Tokens/s counts the examples' own tokens (no padding, each example's prompt in full) over the
Trainer's training time; under packing ``batch_size`` counts packed rows, so the packed side takes
fewer, fuller steps. Packed rows hold the prompt beginning every example shares (SmolLM2's default
system prompt and the user turn's opening) once per row, as training does where the attention takes
a 4D mask; ``--without-shared-prompt`` packs every example's prompt in full, to show what each part
buys. The padding shares and ``packed_tokens_per_example_token`` (the tokens a packed epoch
computes, padding left out, per token of the examples) are the packed run's own figures (one epoch
of batches padded to their longest row, drawn as the Trainer draws them). The loss check scores the
base model once on the same rows, unpacked (padded batch with attention mask) and packed: the two
means over the answer tokens must agree to float32 rounding. The recipe groups its batches by
length (the default), which leaves unpacked batches little padding; ``--ungrouped`` draws both
sides' batches at random instead, as a recipe with ``group_by_length: false`` does.

    .venv/bin/python benchmarks/packing.py --quick   # 32 training rows, one run per side
    .venv/bin/python benchmarks/packing.py           # 160 training rows, 2 runs per side
    .venv/bin/python benchmarks/packing.py --ungrouped   # the same, batches drawn at random
    .venv/bin/python benchmarks/packing.py --without-shared-prompt   # every example's prompt in full
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import common

RECIPE = "chatbot_sft"
TARGET = 1.3


def recipe_for(rows: int, packing: bool, grouped: bool = True):
    return common.load_recipe(
        RECIPE, max_train_samples=rows, max_eval_samples=4, epochs=1, packing=packing, group_by_length=grouped
    )


def train_side(packing: bool, rows: int, splits: str, grouped: bool):
    """One side: a callable that trains into a scratch folder and returns the training figures."""

    def run(out: Path) -> dict:
        return common.train_once(recipe_for(rows, packing, grouped), splits, out, "packing")

    return run


def same_rows_loss(splits: str, rows: int) -> dict:
    """The base model's mean loss on the answer tokens of the same training rows, unpacked and packed."""
    import torch
    from datasets import load_from_disk

    from finetune_assets.models.tokenizer import load_tokenizer
    from finetune_assets.tasks import get_task
    from finetune_assets.tasks.causal_lm import packing
    from finetune_assets.tasks.causal_lm.scoring import collator
    from finetune_assets.training.trainer import take

    task = get_task(recipe_for(rows, False))
    model, tokenizer = task.load_model(task.base_location).train(), load_tokenizer(task.base_location, task.recipe)
    examples = take(load_from_disk(splits)["train"], rows, task.recipe.training.seed).select(range(min(rows, 16)))
    unpacked = collator(tokenizer)(list(examples.select_columns(["input_ids", "attention_mask", "labels"])))
    shared = packing.shared_prompt_for(model, examples)
    packed = packing.PackedCollator(tokenizer.pad_token_id, shared)(
        list(packing.pack(examples, task.recipe.training.max_length, shared))
    )
    with torch.no_grad():
        loss = {name: model(**batch).loss.item() for name, batch in (("unpacked", unpacked), ("packed", packed))}
    return {
        **{f"loss_{k}": round(v, 6) for k, v in loss.items()},
        "loss_relative_difference": abs(loss["packed"] / loss["unpacked"] - 1),
    }


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--rows", type=int, help="training rows per side (default 160; 32 with --quick)")
    cli.add_argument(
        "--ungrouped",
        action="store_true",
        help="both sides draw their batches at random (group_by_length: false), as a recipe without length grouping",
    )
    cli.add_argument(
        "--without-shared-prompt",
        action="store_true",
        help="packed rows hold every example's prompt in full, as where the model's attention takes no 4D mask",
    )
    common.add_repeats(cli)
    args = cli.parse_args()
    if args.without_shared_prompt:
        from finetune_assets.tasks.causal_lm import packing

        packing.takes_a_shared_prompt = lambda model: False
    rows = args.rows or (32 if args.quick else 160)
    repeats = args.repeats if args.repeats > 1 or args.quick else 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as tmp:
        splits, _ = common.prepared_splits_and_base(recipe_for(rows, False), Path(tmp))
        tokens = real_tokens(splits, rows)
        sides = {
            name: train_side(name == "packed", rows, splits, not args.ungrouped) for name in ("unpacked", "packed")
        }
        trials = common.alternate(sides, repeats, "bench-packing-runs-")
        best = {name: min(runs, key=lambda r: r["train_seconds"]) for name, runs in trials.items()}
        loss = same_rows_loss(splits, rows)
    common.print_figures("packing", figures(rows, repeats, tokens, best, loss, not args.ungrouped), args.quick)


def real_tokens(splits: str, rows: int) -> int:
    """The tokens of the training rows both sides train on (what a row holds, padding left out)."""
    from datasets import load_from_disk

    from finetune_assets.training.trainer import take

    spec = recipe_for(rows, False).training
    return sum(len(ids) for ids in take(load_from_disk(splits)["train"], rows, spec.seed)["input_ids"])


def figures(rows: int, repeats: int, tokens: int, best: dict, loss: dict, grouped: bool) -> dict:
    spec = recipe_for(rows, True).training
    per_second = {name: tokens / run["train_seconds"] for name, run in best.items()}
    packed = best["packed"]
    return {
        "setup": f"{RECIPE}: SmolLM2-135M, LoRA, batch {spec.batch_size}, max_length {spec.max_length}, "
        f"{rows} training rows ({tokens} tokens), one epoch, fastest of {repeats} alternating runs per side, "
        f"batches {'grouped by length' if grouped else 'drawn at random'}",
        "cpu": common.cpu_model(),
        "machine": "not quiet unless stated: only the ratio of the two sides, measured in this run, means anything",
        **{f"{name}_optimizer_steps": run["optimizer_steps"] for name, run in best.items()},
        **{f"{name}_train_seconds": round(run["train_seconds"], 1) for name, run in best.items()},
        **{f"{name}_tokens_per_second": round(value, 1) for name, value in per_second.items()},
        "examples_per_packed_row": packed["examples_per_packed_row"],
        "shared_prompt_tokens": packed["shared_prompt_tokens"],
        "packed_tokens_per_example_token": packed["packed_tokens_per_example_token"],
        "padding_share_unpacked": packed["padding_share_unpacked"],
        "padding_share_packed": packed["padding_share_packed"],
        **loss,
        "ratio_packed_to_unpacked_tokens_per_second": round(per_second["packed"] / per_second["unpacked"], 3),
        "target_ratio": f">= {TARGET}",
    }


if __name__ == "__main__":
    main()
