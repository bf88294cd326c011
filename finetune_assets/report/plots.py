"""Plots for the Dagster UI: PNG files next to the artifact, shown inline as markdown metadata."""

from __future__ import annotations

import base64
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no screen on servers and CI
import matplotlib.pyplot as plt

from finetune_assets.promotion.decision import was_promoted
from finetune_assets.report.values import Markdown


def as_markdown(png: Path, title: str) -> Markdown:
    """Inline the PNG so the UI shows the picture itself, not a path."""
    encoded = base64.b64encode(png.read_bytes()).decode()
    return Markdown(f"![{title}](data:image/png;base64,{encoded})")


def loss_curve(history: list[dict], target: Path) -> Path:
    """Training loss per step and validation loss per evaluation, from the Trainer's log history."""
    train = [(row["step"], row["loss"]) for row in history if "loss" in row]
    evals = [(row["step"], row["eval_loss"]) for row in history if "eval_loss" in row]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot(*zip(*train), label="training loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Loss during fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, target)


def reward_curve(history: list[dict], target: Path) -> Path | None:
    """The mean total reward of the sampled completions per logged step, with its standard deviation
    as a band, from a reward-driven training's log history (None for other trainings: no reward)."""
    rows = [(row["step"], row["reward"], row.get("reward_std") or 0.0) for row in history if "reward" in row]
    if not rows:
        return None
    steps, means, spread = (np.asarray(column, dtype=float) for column in zip(*rows))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, means, marker=".", label="mean reward")
    ax.fill_between(steps, means - spread, means + spread, alpha=0.2, label="± reward std")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("total reward")
    ax.set_title("Reward of the sampled completions during training")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, target)


def confusion_matrix(matrix: list[list[int]], labels: list[str], title: str, target: Path) -> Path:
    """Counts per (true, predicted) label pair; the diagonal holds the right answers."""
    size = max(3.0, 1.0 + 0.6 * len(labels))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, target)


def accuracy_breakdown(by_label: list[dict], by_length: list[dict], overall: float, target: Path) -> Path:
    """Where the model goes wrong: test accuracy per true label and per input-length bucket (rows
    ``{"name", "accuracy", "rows"}``), overall accuracy dashed, each bar labelled with its row count."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    panels = ((axes[0], by_label, "per true label", "tab:blue"), (axes[1], by_length, "per input length", "tab:orange"))
    for ax, rows, title, colour in panels:
        bars = ax.bar([row["name"] for row in rows], [row["accuracy"] for row in rows], color=colour)
        ax.bar_label(bars, labels=[f"{row['accuracy']:.2f}\n({row['rows']} rows)" for row in rows], fontsize=7)
        ax.axhline(overall, color="grey", linestyle="--", label=f"overall {overall:.3f}")
        ax.set_title(f"Accuracy {title}", fontsize=10)
        ax.set_ylim(0, 1.15)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("accuracy (fine-tuned model)")
    axes[1].legend(fontsize=7, loc="lower right")
    return _save(fig, target)


def metric_bars(
    tuned: dict[str, float], baseline: dict[str, float], names: list[str], title: str, target: Path
) -> Path:
    """Base and fine-tuned model side by side for each metric in ``names`` (same scale)."""
    fig, ax = plt.subplots(figsize=(1.0 + 1.2 * len(names), 3.5))
    positions = range(len(names))
    width = 0.38
    for offset, scores, label in ((-width / 2, baseline, "base model"), (width / 2, tuned, "fine-tuned")):
        bars = ax.bar([p + offset for p in positions], [scores[n] for n in names], width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(list(positions), names)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, target)


def metric_history(history: list[dict], metric: str, target: Path) -> Path:
    """The gated metric of every challenger over time (filled: promoted), and the champion's score
    on the same test rows where it was measured (hollow)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    rows = [(i, row) for i, row in enumerate(history, start=1) if row.get(metric) is not None]
    ax.plot([i for i, _ in rows], [row[metric] for _, row in rows], color="grey", alpha=0.6)
    for i, row in rows:
        promoted = was_promoted(row)
        ax.scatter(
            i,
            row[metric],
            color="tab:green" if promoted else "tab:red",
            zorder=3,
            label="promoted" if promoted else "not promoted",
        )
        if row.get(f"champion_{metric}") is not None:
            ax.scatter(
                i,
                row[f"champion_{metric}"],
                facecolors="none",
                edgecolors="tab:blue",
                zorder=3,
                label="champion on the same rows",
            )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys())
    ax.set_xlabel("evaluation")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of each export")
    ax.grid(alpha=0.3)
    return _save(fig, target)


def sweep_comparison(variants: list[dict], metric: str, baseline: float | None, chosen: str, target: Path) -> Path:
    """One bar per sweep variant (``name``, ``metric``, ``train_seconds``, ``peak_mib``): the compared
    metric (the chosen variant in green, the base model as a dashed line), training time and peak
    memory, so the price of each gain is in view."""
    names = [row["name"] for row in variants]
    panels = ((metric, metric), ("train_seconds", "training time (s)"), ("peak_mib", "peak memory (MiB)"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.9 + 0.45 * len(names)), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        values = [row.get(key) or 0.0 for row in variants]
        bars = ax.barh(names, values, color=["tab:green" if name == chosen else "tab:grey" for name in names])
        ax.bar_label(bars, fmt="%.4g", fontsize=7, padding=2)
        if key == metric and baseline is not None:
            ax.axvline(baseline, color="tab:blue", linestyle="--", label="base model")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].invert_yaxis()  # the sweep's order, top to bottom
    fig.suptitle(f"Sweep variants on the same test rows (green: chosen, best {metric})", fontsize=10)
    return _save(fig, target)


def _save(fig, target: Path) -> Path:
    fig.tight_layout()
    fig.savefig(target, dpi=90)
    plt.close(fig)
    return target
