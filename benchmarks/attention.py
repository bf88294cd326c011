"""Training-time attention on a CPU in bf16: torch's fused kernel (transformers' ``sdpa``) against
the two plain products the trainer switches to (``finetune_assets/models/attention.py``), and with
``--before <commit>`` against the products as that commit computed them.

Why: the trainer replaces ``sdpa`` with the two products on rows of up to 128 tokens, because on a
CPU the fused kernel's bf16 backward is slow there (the module's docstring). A change to the
products' elementwise work (the scale, the mask, the casts) is small next to a whole step, and the
machine's speed drifts between runs, so the sides alternate in one process:

- one attention layer, forward and backward under bf16 autocast, milliseconds, best of several
  runs each, on the shapes the recipes train: MiniLM's (the quickstart: 12 heads, 64 rows of 55
  tokens, right padding, attention dropout 0.1, queries and keys from bf16 products), SmolLM2's
  (``chatbot_sft``: 9 query heads over 3 key/value heads, 4 rows of 96, causal; rotary embeddings
  hand it float32 queries and keys) and a TinyLlama's (32 over 4, 16 rows of 128, causal);
- with ``--before``: whole training steps of the quickstart's MiniLM and of ``chatbot_sft``'s
  SmolLM2-135M with LoRA, built as ``benchmarks/compute_efficiency.py`` builds them (its batches,
  fused AdamW, 16-bit dropout masks), each batch stepped once with each side's products, the two
  alternating step by step (and which goes first, batch by batch).

``--before`` reads that commit's ``finetune_assets/models/attention.py`` with ``git show`` (it must
have one) and registers its function beside today's.

    .venv/bin/python benchmarks/attention.py --quick   # under a minute on 2 CPU cores
    .venv/bin/python benchmarks/attention.py --before dfe3160
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import common
import compute_efficiency as workloads
import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from finetune_assets.models import attention, dropout

BEFORE = "finetune_assets_products_before"


@dataclass
class Shape:
    """One attention layer's training call: ``rows`` sequences of ``length`` tokens."""

    name: str
    rows: int
    heads: int
    kv_heads: int
    length: int
    head_dim: int
    causal: bool
    dropout: float
    float_queries: bool  # rotary embeddings under autocast hand attention float32 queries and keys


SHAPES = (
    Shape("minilm", 64, 12, 12, 55, 32, False, 0.1, False),
    Shape("smollm2", 4, 9, 3, 96, 64, True, 0.0, True),
    Shape("tinyllama", 16, 32, 4, 128, 64, True, 0.0, True),
)


def layer_call(shape: Shape):
    """A function that runs ``forward`` (an attention function with ``sdpa_attention_forward``'s
    contract) and its backward on random inputs of ``shape``; a fifth of the rows padded."""
    torch.manual_seed(0)
    module = torch.nn.Module().train()
    module.is_causal = shape.causal
    module.num_key_value_groups = shape.heads // shape.kv_heads  # read by transformers' sdpa
    first = torch.float32 if shape.float_queries else torch.bfloat16
    query = torch.randn(shape.rows, shape.length, shape.heads, shape.head_dim, dtype=first).transpose(1, 2)
    key, value = (
        torch.randn(shape.rows, shape.length, shape.kv_heads, shape.head_dim, dtype=dtype).transpose(1, 2)
        for dtype in (first, torch.bfloat16)
    )
    for tensor in (query, key, value):
        tensor.requires_grad_()
    mask = torch.ones(shape.rows, 1, shape.length, shape.length, dtype=torch.bool)
    if shape.causal:
        mask = mask.tril()
    mask[: shape.rows // 5, ..., shape.length * 3 // 4 :] = False  # right-padded rows
    mask[..., 0] = True

    def run(forward) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output, _ = forward(module, query, key, value, mask, dropout=shape.dropout, scaling=shape.head_dim**-0.5)
        output.float().square().mean().backward()

    return run


def layer_milliseconds(sides: dict, shape: Shape, repeats: int) -> dict:
    """Best milliseconds of one forward and backward of each side on ``shape``, the sides taking
    turns, 5 calls a turn, their order reversed every other round."""
    run, best = layer_call(shape), dict.fromkeys(sides, float("inf"))
    for forward in sides.values():
        run(forward)  # warm-up
    for turn in range(repeats):
        for name in sorted(sides, reverse=turn % 2 == 1):
            with common.stopwatch() as took:
                for _ in range(5):
                    run(sides[name])
            best[name] = min(best[name], took() / 5 * 1e3)
    return best


def before_products(commit: str):
    """``commit``'s two-product attention function, registered as :data:`BEFORE`; today's stays
    registered under its own name."""
    source = subprocess.run(
        ["git", "show", f"{commit}:finetune_assets/models/attention.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="bench-attention-")) / "attention_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("attention_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers itself under NAME: today's goes back below
    for name, function in ((BEFORE, module.two_product_attention), (attention.NAME, attention.two_product_attention)):
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, sdpa_mask)
    return module.two_product_attention


def step_seconds(work: workloads.Workload, warm_ups: int) -> dict:
    """Seconds a step of ``work``'s batches after ``warm_ups``, each batch stepped with the earlier
    commit's products and with today's."""
    model = work.model
    step = workloads.training_step(model, [p for p in model.parameters() if p.requires_grad], "cpu", torch.bfloat16)
    sides = {"before": lambda: implementation(model, BEFORE), "products": lambda: implementation(model, attention.NAME)}
    with dropout.cpu_dropout(model):
        return workloads.alternating_step_seconds(step, work.batches, sides, warm_ups)


@contextlib.contextmanager
def implementation(model, name: str):
    """``model`` computes attention with the function registered as ``name`` inside the block."""
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation("sdpa")


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--before", help="a commit whose products to compare with today's (adds whole steps)")
    args = cli.parse_args()
    repeats, warm_ups, steps = (3, 1, 3) if args.quick else (10, 2, 12)
    sides = {"sdpa": sdpa_attention_forward, "products": attention.two_product_attention}
    if args.before:
        sides["before"] = before_products(args.before)
    figures = {"cpu": common.cpu_model(), "before": args.before or "none"}
    for shape in SHAPES:
        milliseconds = layer_milliseconds(sides, shape, repeats)
        for name, value in milliseconds.items():
            figures[f"{shape.name}_layer_ms_{name}"] = value
        figures[f"{shape.name}_ratio_products_to_sdpa"] = round(milliseconds["products"] / milliseconds["sdpa"], 3)
        if args.before:
            ratio = milliseconds["products"] / milliseconds["before"]
            figures[f"{shape.name}_ratio_products_to_before"] = round(ratio, 3)
    if args.before:
        seconds_of = functools.partial(step_seconds, warm_ups=warm_ups)
        figures.update(workloads.compared_steps(warm_ups, steps, seconds_of, "before", "products"))
    common.print_figures("attention", figures, args.quick)


if __name__ == "__main__":
    main()
