"""The six stages of the chain as plain functions: the heavy work behind each asset.

Each stage writes into ``staging`` (a temporary folder that becomes ``final`` when the stage
returns) and returns ``(info, metadata)``: a few figures carried in the asset's reference, and the
metadata shown in the UI. Fingerprints, caching, lineage and atomic writes are the caller's job
(:mod:`finetune_assets.factory`), so a stage only does its one piece of work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import MetadataValue
from datasets import Dataset, DatasetDict

from finetune_assets import plots, sources
from finetune_assets.artifacts import ArtifactRef
from finetune_assets.caching import ancestry
from finetune_assets.cleaning import clean
from finetune_assets.evaluation import evaluate_both
from finetune_assets.export import export_model
from finetune_assets.markdown import markdown_table
from finetune_assets.recipe import Recipe
from finetune_assets.splitting import split_rows
from finetune_assets.tasks import get_task
from finetune_assets.tokenizer import load_tokenizer
from finetune_assets.training import train
from finetune_assets.validation import column_schema

Result = tuple[dict, dict]


def _recipe_dir(recipe: Recipe) -> Path:
    return recipe.source_file.parent


def base_location(recipe: Recipe) -> str:
    return sources.model_location(recipe.base_model, _recipe_dir(recipe))


def raw_dataset(recipe: Recipe, log, staging: Path, final: Path, frame: pd.DataFrame, source: str,
                content_hash: str) -> Result:
    frame.to_parquet(staging / "rows.parquet", index=False)
    return {"content_hash": content_hash, "source": source}, {
        "source": source,
        "rows": len(frame),
        "columns": ", ".join(map(str, frame.columns)),
        "content_hash": content_hash,
        "path": MetadataValue.path(str(final / "rows.parquet")),
        "preview": MetadataValue.md(markdown_table(frame.head(5).astype(str).to_dict("records"))),
    }


def clean_dataset(recipe: Recipe, log, staging: Path, final: Path, raw: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    rows_in = pd.read_parquet(raw.path)
    cleaned = clean(rows_in, task, recipe)
    dropped = pd.concat([frame.assign(reason=reason) for reason, frame in cleaned.dropped.items()])
    cleaned.rows.to_parquet(staging / "rows.parquet", index=False)
    dropped.astype(str).to_parquet(staging / "dropped.parquet")
    counts = cleaned.counts()
    log.info(f"cleaning kept {len(cleaned.rows)} of {len(rows_in)} rows; dropped {counts}")
    examples = [{"reason": reason, **{k: str(v)[:120] for k, v in row.items()}}
                for reason, frame in cleaned.dropped.items() for row in frame.head(3).to_dict("records")]
    return {"rows": len(cleaned.rows), "rows_in": len(rows_in), "dropped": counts}, {
        "rows_in": len(rows_in),
        "rows_out": len(cleaned.rows),
        **{f"dropped_{reason.replace(' ', '_')}": n for reason, n in counts.items()},
        "dropped_examples": MetadataValue.md(markdown_table(examples) if examples else "nothing dropped"),
        **task.describe_data(cleaned.rows, recipe),
        "path": MetadataValue.path(str(final / "rows.parquet")),
        **column_schema(task.schema(recipe)),
    }


def tokenized_splits(recipe: Recipe, log, staging: Path, final: Path, clean_ref: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    rows = pd.read_parquet(clean_ref.path)
    parts = split_rows(rows, recipe, task.stratify_column(), task.split_groups(rows))
    tokenizer = load_tokenizer(base_location(recipe), recipe)
    splits = DatasetDict({name: Dataset.from_pandas(part, preserve_index=False) for name, part in parts.items()})
    splits = task.tokenize(splits, tokenizer, recipe)
    splits.save_to_disk(str(staging))
    lengths = np.concatenate([np.asarray(split["length"]) for split in splits.values()])
    truncated = np.concatenate([np.asarray(split["truncated"]) for split in splits.values()])
    sizes = {name: len(split) for name, split in splits.items()}
    log.info(f"split sizes {sizes}; {truncated.mean():.1%} truncated")
    return sizes, {
        **{f"rows_{name}": n for name, n in sizes.items()},
        "max_length": recipe.training.max_length,
        "truncation_rate": float(truncated.mean()),
        **{f"tokens_p{q}": float(np.percentile(lengths, q)) for q in (50, 90, 99)},
        "tokens_max": int(lengths.max()),
        "path": MetadataValue.path(str(final)),
    }


def finetuned_model(recipe: Recipe, log, staging: Path, final: Path, splits_ref: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    figures = train(recipe, task, Path(splits_ref.path), base_location(recipe), staging, log)
    return {"method": recipe.method}, {
        **{k: v for k, v in figures.items() if v is not None and k != "lora_target_modules"},
        "lora_target_modules": ", ".join(figures["lora_target_modules"]) or "none (full fine-tuning)",
        "loss_curve": plots.as_markdown(staging / "loss_curve.png", "loss curve"),
        "path": MetadataValue.path(str(final)),
    }


def evaluation_report(recipe: Recipe, log, staging: Path, final: Path, splits_ref: ArtifactRef,
                      model_ref: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    tuned, baseline, pictures = evaluate_both(recipe, task, Path(splits_ref.path), Path(model_ref.path),
                                              base_location(recipe), staging, log)
    metrics = {**tuned.metrics, **{f"baseline_{k}": v for k, v in baseline.metrics.items()}}
    log.info("test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return {"metrics": metrics}, {
        **{k: float(v) for k, v in metrics.items()},
        **{key: plots.as_markdown(path, key) for key, path in pictures.items()},
        **task.report_metadata(tuned, baseline, recipe),
        "sample_predictions": MetadataValue.md(markdown_table(tuned.samples)),
        "path": MetadataValue.path(str(final / "report.json")),
    }


def exported_model(recipe: Recipe, log, staging: Path, final: Path, model_ref: ArtifactRef,
                   report_ref: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    report = json.loads(Path(report_ref.path).read_text())
    lineage = ancestry(evaluation_report=report_ref, finetuned_model=model_ref)
    probe_text = report["tuned"]["samples"][0]["text"] if report["tuned"]["samples"] else "hello"
    started = time.monotonic()
    probe = export_model(recipe, task, Path(model_ref.path), base_location(recipe), report, lineage,
                         staging, probe_text)
    log.info(f"exported to {final} ({time.monotonic() - started:.1f}s); pipeline probe: {probe['probe_output']}")
    return {"metrics": report_ref.info["metrics"]}, {
        "pipeline_task": task.pipeline_task,
        "pipeline_probe": MetadataValue.json(probe),
        "model_card": MetadataValue.md((staging / "README.md").read_text()),
        task.primary_metric: float(report_ref.info["metrics"][task.primary_metric]),
    }
