"""The six stages of the chain as plain functions: upstream refs in, (ref, metadata) out.

They know nothing of Dagster beyond a logger and metadata values, so the asset factory stays a
thin wiring layer and each stage can be called directly. Each stage writes into a folder named by
its fingerprint (upstream fingerprints + its part of the recipe + its code version), atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import MetadataValue
from datasets import Dataset, DatasetDict, load_from_disk

from finetune_assets import plots, sources
from finetune_assets.artifacts import ArtifactRef, ArtifactStore, atomic_dir, fingerprint
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

# Bump a stage's version when its code changes what it writes; it is part of the fingerprint.
CODE_VERSIONS = {
    "raw_dataset": "1",
    "clean_dataset": "1",
    "tokenized_splits": "1",
    "finetuned_model": "1",
    "evaluation_report": "1",
    "exported_model": "1",
}

Result = tuple[ArtifactRef, dict]


def _recipe_dir(recipe: Recipe) -> Path:
    return recipe.source_file.parent


def base_location(recipe: Recipe) -> str:
    return sources.model_location(recipe.base_model, _recipe_dir(recipe))


def raw_dataset(recipe: Recipe, store: ArtifactStore, log) -> Result:
    spec = recipe.dataset
    source = sources.resolve(spec.source, _recipe_dir(recipe))
    log.info(f"reading {source.describe()}")
    frame = sources.read_table(source, format=spec.format, encoding=spec.encoding,
                               hub_config=spec.hub_config, hub_split=spec.hub_split)
    content_hash = fingerprint(list(frame.columns),
                               pd.util.hash_pandas_object(frame.astype(str), index=False).sum())
    fp = fingerprint(content_hash, CODE_VERSIONS["raw_dataset"])
    folder = store.folder(recipe.name, "raw_dataset", fp)
    with atomic_dir(folder) as staging:
        frame.to_parquet(staging / "rows.parquet", index=False)
    ref = ArtifactRef(str(folder / "rows.parquet"), fp, {"content_hash": content_hash})
    return ref, {
        "source": source.describe(),
        "rows": len(frame),
        "columns": ", ".join(map(str, frame.columns)),
        "content_hash": content_hash,
        "path": MetadataValue.path(ref.path),
        "preview": MetadataValue.md(markdown_table(frame.head(5).to_dict("records"))),
    }


def clean_dataset(recipe: Recipe, store: ArtifactStore, log, raw: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    rows_in = pd.read_parquet(raw.path)
    cleaned = clean(rows_in, task, recipe)
    fp = fingerprint(raw.fingerprint, recipe.section("task", "dataset", "cleaning"),
                     CODE_VERSIONS["clean_dataset"])
    folder = store.folder(recipe.name, "clean_dataset", fp)
    dropped = pd.concat([frame.assign(reason=reason) for reason, frame in cleaned.dropped.items()])
    with atomic_dir(folder) as staging:
        cleaned.rows.to_parquet(staging / "rows.parquet", index=False)
        dropped.astype(str).to_parquet(staging / "dropped.parquet")
    counts = cleaned.counts()
    log.info(f"cleaning kept {len(cleaned.rows)} of {len(rows_in)} rows; dropped {counts}")
    examples = [{"reason": reason, **{k: str(v)[:120] for k, v in row.items()}}
                for reason, frame in cleaned.dropped.items() for row in frame.head(3).to_dict("records")]
    ref = ArtifactRef(str(folder / "rows.parquet"), fp,
                      {"rows": len(cleaned.rows), "rows_in": len(rows_in), "dropped": counts},
                      _ancestry(raw_dataset=raw))
    return ref, {
        "rows_in": len(rows_in),
        "rows_out": len(cleaned.rows),
        **{f"dropped_{reason.replace(' ', '_')}": n for reason, n in counts.items()},
        "dropped_examples": MetadataValue.md(markdown_table(examples) if examples else "nothing dropped"),
        **task.describe_data(cleaned.rows, recipe),
        "path": MetadataValue.path(ref.path),
        **column_schema(task.schema(recipe)),
    }


def tokenized_splits(recipe: Recipe, store: ArtifactStore, log, clean_ref: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    rows = pd.read_parquet(clean_ref.path)
    parts = split_rows(rows, recipe, task.stratify_column())
    tokenizer = load_tokenizer(base_location(recipe), recipe)
    splits = DatasetDict({name: Dataset.from_pandas(part, preserve_index=False) for name, part in parts.items()})
    splits = task.tokenize(splits, tokenizer, recipe)
    fp = fingerprint(clean_ref.fingerprint, recipe.section("base_model", "splits", "training"),
                     CODE_VERSIONS["tokenized_splits"])
    folder = store.folder(recipe.name, "tokenized_splits", fp)
    with atomic_dir(folder) as staging:
        splits.save_to_disk(str(staging))
    lengths = np.concatenate([np.asarray(split["length"]) for split in splits.values()])
    truncated = np.concatenate([np.asarray(split["truncated"]) for split in splits.values()])
    log.info(f"split sizes {({n: len(s) for n, s in splits.items()})}; {truncated.mean():.1%} truncated")
    ref = ArtifactRef(str(folder), fp, {n: len(s) for n, s in splits.items()},
                      _ancestry(clean_dataset=clean_ref))
    return ref, {
        **{f"rows_{name}": len(split) for name, split in splits.items()},
        "max_length": recipe.training.max_length,
        "truncation_rate": float(truncated.mean()),
        **{f"tokens_p{q}": float(np.percentile(lengths, q)) for q in (50, 90, 99)},
        "tokens_max": int(lengths.max()),
        "path": MetadataValue.path(ref.path),
    }


def finetuned_model(recipe: Recipe, store: ArtifactStore, log, splits_ref: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    fp = fingerprint(splits_ref.fingerprint, recipe.section("base_model", "method", "lora", "training"),
                     CODE_VERSIONS["finetuned_model"])
    folder = store.folder(recipe.name, "finetuned_model", fp)
    with atomic_dir(folder) as staging:
        figures = train(recipe, task, Path(splits_ref.path), base_location(recipe), staging, log)
    ref = ArtifactRef(str(folder), fp, {"method": recipe.method}, _ancestry(tokenized_splits=splits_ref))
    return ref, {
        **{k: v for k, v in figures.items() if v is not None and k != "lora_target_modules"},
        "lora_target_modules": ", ".join(figures["lora_target_modules"]) or "none (full fine-tuning)",
        "loss_curve": plots.as_markdown(folder / "loss_curve.png", "loss curve"),
        "path": MetadataValue.path(ref.path),
    }


def evaluation_report(recipe: Recipe, store: ArtifactStore, log, splits_ref: ArtifactRef,
                      model_ref: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    fp = fingerprint(splits_ref.fingerprint, model_ref.fingerprint, CODE_VERSIONS["evaluation_report"])
    folder = store.folder(recipe.name, "evaluation_report", fp)
    with atomic_dir(folder) as staging:
        tuned, baseline, pictures = evaluate_both(recipe, task, Path(splits_ref.path), Path(model_ref.path),
                                                  base_location(recipe), staging, log)
    metrics = {**tuned.metrics, **{f"baseline_{k}": v for k, v in baseline.metrics.items()}}
    log.info("test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    ref = ArtifactRef(str(folder / "report.json"), fp, {"metrics": metrics},
                      _ancestry(tokenized_splits=splits_ref, finetuned_model=model_ref))
    return ref, {
        **{k: float(v) for k, v in metrics.items()},
        **{key: plots.as_markdown(folder / path.name, key) for key, path in pictures.items()},
        **task.report_metadata(tuned, baseline, recipe),
        "sample_predictions": MetadataValue.md(markdown_table(tuned.samples)),
        "path": MetadataValue.path(ref.path),
    }


def exported_model(recipe: Recipe, store: ArtifactStore, log, model_ref: ArtifactRef,
                   report_ref: ArtifactRef) -> Result:
    task = get_task(recipe.task)
    report = json.loads(Path(report_ref.path).read_text())
    fp = fingerprint(model_ref.fingerprint, report_ref.fingerprint, CODE_VERSIONS["exported_model"])
    folder = store.folder(recipe.name, "exported_model", fp)
    lineage = _ancestry(evaluation_report=report_ref, finetuned_model=model_ref)
    probe_text = report["tuned"]["samples"][0]["text"] if report["tuned"]["samples"] else "hello"
    started = time.monotonic()
    with atomic_dir(folder) as staging:
        probe = export_model(recipe, task, Path(model_ref.path), base_location(recipe), report,
                             lineage, staging, probe_text)
    log.info(f"exported to {folder} ({time.monotonic() - started:.1f}s); pipeline probe: {probe['probe_output']}")
    ref = ArtifactRef(str(folder), fp, {"metrics": report_ref.info["metrics"]}, lineage)
    return ref, {
        "path": MetadataValue.path(str(folder)),
        "pipeline_task": task.pipeline_task,
        "pipeline_probe": MetadataValue.json(probe),
        "model_card": MetadataValue.md((folder / "README.md").read_text()),
        task.primary_metric: float(report_ref.info["metrics"][task.primary_metric]),
    }


def _ancestry(**upstream: ArtifactRef) -> dict:
    """Every artifact upstream of these refs, by asset name: the chain back to the raw data."""
    found: dict = {}
    for name, ref in upstream.items():
        found.update(ref.lineage)
        found[name] = {"path": ref.path, "fingerprint": ref.fingerprint, **ref.info}
    return found
