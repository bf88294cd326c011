"""Dropout with torch's CPU masks against masks drawn 16 bits at a time
(``finetune_assets/models/dropout.py``): the masks alone, then whole training steps.

Why: on a CPU torch draws one random number per element for dropout's mask (``bernoulli_``), and
that was the largest share of a bf16 MiniLM step after the matrix products. The trainer now draws
the masks 16 bits at a time; this measures what that buys, side by side in one process:

- the masks alone: forward and backward of dropout (p 0.1) on a (64, 110, 384) tensor, as a MiniLM
  layer's output in the quickstart's batches, in float32 and bf16, nanoseconds an element, best of
  several runs each;
- training steps: the quickstart's MiniLM (full fine-tuning, hidden and attention dropout 0.1) and
  ``chatbot_sft``'s SmolLM2-135M with its LoRA adapter (LoRA dropout 0.05 on the attention
  projections' inputs), both built as ``benchmarks/compute_efficiency.py`` builds them (its batches,
  the pipeline's precision, fused AdamW, the trainer's attention), each batch stepped once with
  torch's dropout and once with 16-bit draws, the two alternating step by step (and which goes
  first, batch by batch). The torch side runs torch's own dropout everywhere, the product
  attention's included.

    .venv/bin/python benchmarks/dropout.py --quick   # under a minute on 2 CPU cores
    .venv/bin/python benchmarks/dropout.py
"""

from __future__ import annotations

import contextlib
import functools

import common
import compute_efficiency as workloads
import torch

from finetune_assets.models import attention, dropout

SHAPE = (64, 110, 384)


def mask_ns_per_element(apply, dtype, repeats: int) -> float:
    """Best nanoseconds an element of one forward and backward of ``apply`` (p 0.1) on :data:`SHAPE`."""
    inputs = torch.randn(SHAPE, dtype=dtype, requires_grad=True)
    grad = torch.randn(SHAPE, dtype=dtype)
    times = []
    for _ in range(repeats + 1):
        with common.stopwatch() as took:
            for _ in range(10):
                apply(inputs, 0.1).backward(grad)
        times.append(took() / 10)
    return min(times[1:]) / inputs.numel() * 1e9


@contextlib.contextmanager
def torch_dropout():
    """Torch's own dropout in the product attention too, for the torch side's steps."""
    drawn, attention.drop = attention.drop, torch.nn.functional.dropout
    try:
        yield
    finally:
        attention.drop = drawn


def step_seconds(work: workloads.Workload, warm_ups: int, autocast) -> dict:
    """Seconds a step of ``work``'s batches after ``warm_ups``, each batch stepped with torch's
    dropout and with 16-bit draws (the same shapes, the same model training on)."""
    model = work.model
    step = workloads.training_step(model, [p for p in model.parameters() if p.requires_grad], "cpu", autocast)
    sides = {"torch": torch_dropout, "16bit": lambda: dropout.cpu_dropout(model)}
    with attention.product_attention(model):
        return workloads.alternating_step_seconds(step, work.batches, sides, warm_ups)


def main() -> None:
    args = common.parser(__doc__).parse_args()
    repeats, warm_ups, steps = (3, 1, 3) if args.quick else (10, 2, 12)
    figures = {"cpu": common.cpu_model()}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        mine = mask_ns_per_element(dropout.dropout, dtype, repeats)
        theirs = mask_ns_per_element(torch.nn.functional.dropout, dtype, repeats)
        figures[f"mask_ns_per_element_{name}_torch"] = theirs
        figures[f"mask_ns_per_element_{name}_16bit"] = mine
        figures[f"mask_speedup_{name}"] = round(theirs / mine, 2)
    numerics = common.precision(common.load_recipe("tweet_sentiment"))
    autocast = {"bf16": torch.bfloat16}.get(numerics.name)
    figures["precision"] = str(numerics)
    seconds_of = functools.partial(step_seconds, warm_ups=warm_ups, autocast=autocast)
    figures.update(workloads.compared_steps(warm_ups, steps, seconds_of, "torch", "16bit"))
    common.print_figures("dropout", figures, args.quick)


if __name__ == "__main__":
    main()
