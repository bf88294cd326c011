"""The six stages' work as plain functions: what each asset actually does.

Each receives a :class:`StageWork` (the recipe as this run sees it, a log, the ``staging`` folder
to write into and the ``final`` folder it will become) and the references of its upstream
artifacts, and returns ``(info, metadata)``: a few figures carried in its own reference, and the
metadata shown in the UI. Fingerprints, caching, lineage and atomic writes are the runner's job
(:mod:`finetune_assets.pipeline.runner`), so a stage only does its one piece of work.

Heavy libraries (torch, transformers, datasets) are imported inside the functions, so reading
the chain's table, or a fully cached run, never pays for them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from finetune_assets.data import sources
from finetune_assets.pipeline.artifacts import ArtifactRef, fingerprint
from finetune_assets.pipeline.caching import ancestry
from finetune_assets.pipeline.processes import StartProcess, run_process
from finetune_assets.pipeline.stage_names import TOKENIZED_SPLITS
from finetune_assets.promotion.champion_scores import rows_key
from finetune_assets.recipes import Recipe
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import FilePath, Json, Markdown, rounded
from finetune_assets.tasks import get_task

Result = tuple[dict, dict]


@dataclass(frozen=True)
class Inputs:
    """What a stage reads before its fingerprint is known (``raw_dataset``: the rows themselves);
    ``digest`` joins the fingerprint, ``value`` is handed to the stage."""

    digest: str
    value: Any


@dataclass(frozen=True)
class StageWork:
    """Everything a stage function gets besides its upstream references."""

    recipe: Recipe
    log: Any  # a logging.Logger-like object (Dagster's context.log in a run)
    staging: Path  # write the artifact here; it is renamed to ``final`` when the stage returns
    final: Path
    inputs: Inputs | None = None
    fingerprint: str = ""
    checkpoints: Path | None = None  # kept across failed attempts of this fingerprint (training stages)
    start_process: StartProcess = run_process  # starts a process: Dagster Pipes in a run, a plain subprocess elsewhere


def read_raw_rows(recipe: Recipe, log, root: Path, upstream: list[ArtifactRef]) -> Inputs:
    """The recipe's rows as the source holds them, hashed by content (the first stage: no upstream,
    nothing under ``root`` to read). What cannot work fails here, before any data is read: a base
    model without safetensors weights, a ``training.precision`` this machine cannot run, a tracker of
    ``training.report_to`` that is not installed, ``training.packing`` without its packer (TRL), a
    ``qlora`` recipe on a machine that cannot train it."""
    from finetune_assets.models import precision
    from finetune_assets.tasks.causal_lm import packing
    from finetune_assets.training import tracking

    sources.require_safetensors(recipe.base_model, recipe.source_file.parent)
    precision.resolve(recipe)
    tracking.require_trackers(recipe)
    packing.require_packer(recipe)
    if recipe.method == "qlora":
        from finetune_assets.models import methods

        methods.preflight(recipe, log)
    read = sources.read_dataset(recipe)
    for bad in read.skipped:
        log.warning(f"skipped {bad.file} {bad.where()}: {bad.problem} (dataset.on_bad_lines: skip)")
    row_hashes = int(pd.util.hash_pandas_object(read.frame.astype(str), index=False).sum())
    return Inputs(fingerprint(list(map(str, read.frame.columns)), row_hashes), read)


def raw_dataset(work: StageWork) -> Result:
    read = work.inputs.value
    frame = read.frame
    frame.to_parquet(work.staging / "rows.parquet", index=False)
    skipped = [bad.receipt() for bad in read.skipped]
    (work.staging / "skipped_lines.json").write_text(json.dumps(skipped, indent=1))
    return {"content_hash": work.inputs.digest, "source": read.source, "skipped_lines": len(skipped)}, {
        "source": read.source,
        "rows": len(frame),
        "columns": ", ".join(map(str, frame.columns)),
        "content_hash": work.inputs.digest,
        "skipped_lines": len(skipped),
        "skipped_line_numbers": ", ".join(f"{Path(bad['file']).name}:{bad['line']}" for bad in skipped[:200]) or "none",
        "skipped_lines_table": Markdown(markdown_table(skipped[:50]) if skipped else "nothing skipped"),
        "path": FilePath(str(work.final / "rows.parquet")),
        "preview": Markdown(markdown_table(frame.head(5).astype(str).to_dict("records"))),
    }


def clean_dataset(work: StageWork, raw: ArtifactRef) -> Result:
    from finetune_assets.data.cleaning import clean

    task = get_task(work.recipe)
    rows_in = pd.read_parquet(raw.path)
    cleaned = clean(rows_in, task, work.log)
    dropped = pd.concat([frame.assign(reason=reason) for reason, frame in cleaned.dropped.items()])
    cleaned.rows.to_parquet(work.staging / "rows.parquet", index=False)
    dropped.astype(str).to_parquet(work.staging / "dropped.parquet")
    counts = cleaned.counts()
    work.log.info(f"cleaning kept {len(cleaned.rows)} of {len(rows_in)} rows; dropped {counts}")
    examples = [
        {"reason": reason, **{k: str(v)[:120] for k, v in row.items()}}
        for reason, frame in cleaned.dropped.items()
        for row in frame.head(3).to_dict("records")
    ]
    return {"rows": len(cleaned.rows), "rows_in": len(rows_in), "dropped": counts}, {
        "rows_in": len(rows_in),
        "rows_out": len(cleaned.rows),
        **{f"dropped_{reason.replace(' ', '_')}": n for reason, n in counts.items()},
        "dropped_examples": Markdown(markdown_table(examples) if examples else "nothing dropped"),
        **task.describe_data(cleaned.rows),
        "path": FilePath(str(work.final / "rows.parquet")),
    }


def tokenized_splits(work: StageWork, clean_ref: ArtifactRef) -> Result:
    import numpy as np
    from datasets import Dataset, DatasetDict

    from finetune_assets.data.splitting import split_rows
    from finetune_assets.models.positions import require_max_length_fits
    from finetune_assets.models.tokenizer import load_tokenizer

    recipe, task = work.recipe, get_task(work.recipe)
    require_max_length_fits(recipe, task.base_location)  # before any work: training would crash on it
    rows = pd.read_parquet(clean_ref.path)
    parts = split_rows(rows, recipe, task.stratify_column(), task.split_groups(rows))
    tokenizer = load_tokenizer(task.base_location, recipe)
    splits = DatasetDict({name: Dataset.from_pandas(part, preserve_index=False) for name, part in parts.items()})
    splits = task.tokenize(splits, tokenizer)
    splits.save_to_disk(str(work.staging))
    lengths = np.concatenate([np.asarray(split["length"]) for split in splits.values()])
    truncated = np.concatenate([np.asarray(split["truncated"]) for split in splits.values()])
    sizes = {name: len(split) for name, split in splits.items()}
    work.log.info(f"split sizes {sizes}; {truncated.mean():.1%} truncated")
    return sizes, {
        **{f"rows_{name}": n for name, n in sizes.items()},
        "max_length": recipe.training.max_length,
        "truncation_rate": float(truncated.mean()),
        **{f"tokens_p{q}": float(np.percentile(lengths, q)) for q in (50, 90, 99)},
        "tokens_max": int(lengths.max()),
        "path": FilePath(str(work.final)),
    }


def finetuned_model(work: StageWork, splits_ref: ArtifactRef) -> Result:
    """Train in a process of its own, started the way ``compute.launcher`` says, through
    ``work.start_process``; checkpoints go to ``work.checkpoints``, which a retry resumes from."""
    from finetune_assets.errors import ProcessFailed
    from finetune_assets.export.gguf import require_decoder_only
    from finetune_assets.recipes import save_resolved
    from finetune_assets.report import plots
    from finetune_assets.training import failure
    from finetune_assets.training.command import check_splits, training_command

    recipe, splits = work.recipe, Path(splits_ref.path)
    check_splits(recipe, splits, recipe.compute.training_processes)  # bad settings fail here, not in a retried process
    require_decoder_only(recipe, get_task(recipe).base_location)  # publish.gguf: a causal LM, before training
    # the fingerprint names the precision resolved here; the process must train in that one
    command = training_command(
        recipe,
        save_resolved(recipe, work.staging),
        splits,
        work.staging,
        work.checkpoints,
        work.fingerprint,
        get_task(recipe).precision.name,
    )
    work.log.info(f"starting: {' '.join(command)}")
    started = time.time()
    try:
        figures = work.start_process(
            command, {"TOKENIZERS_PARALLELISM": "false"}, work.staging / "training_figures.json"
        )
    except ProcessFailed as error:  # what failed, from the process's own record, and whether to retry
        raise failure.explain(error, work.checkpoints, started, work.staging) from error
    return {"method": recipe.method}, {
        **{k: v for k, v in figures.items() if v is not None and k != "lora_target_modules"},
        "lora_target_modules": ", ".join(figures.get("lora_target_modules") or []) or "none (full fine-tuning)",
        "launcher": recipe.compute.launcher,
        "loss_curve": plots.as_markdown(work.staging / "loss_curve.png", "loss curve"),
        **_reward_curve(work.staging / "reward_curve.png"),
        "path": FilePath(str(work.final)),
    }


def _reward_curve(png: Path) -> dict:
    """The reward curve beside the loss curve, where the training had rewards (task: reward)."""
    from finetune_assets.report import plots

    return {"reward_curve": plots.as_markdown(png, "reward curve")} if png.exists() else {}


def evaluation_report(work: StageWork, splits_ref: ArtifactRef, model_ref: ArtifactRef) -> Result:
    from finetune_assets.inference.evaluation import evaluate_both
    from finetune_assets.report import plots

    recipe, task = work.recipe, get_task(work.recipe)
    tuned, baseline, pictures = evaluate_both(task, Path(splits_ref.path), Path(model_ref.path), work.staging, work.log)
    metrics = {**tuned.metrics, **{f"baseline_{k}": v for k, v in baseline.metrics.items()}}
    rows = json.loads((work.staging / "report.json").read_text())["test_rows"]
    work.log.info(f"test metrics on {rows} rows: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    # rows_key says which rows these figures were measured on (the promotion gate compares alike).
    return {"metrics": metrics, "test_rows": rows, "rows_key": rows_key(recipe, splits_ref)}, {
        **{k: float(v) for k, v in metrics.items()},
        "test_rows": rows,
        **{key: plots.as_markdown(path, key) for key, path in pictures.items()},
        **task.report_metadata(tuned, baseline),
        **task.precision.inference_metadata(),
        "sample_predictions": Markdown(markdown_table(tuned.samples)),
        "path": FilePath(str(work.final / "report.json")),
    }


def exported_model(work: StageWork, model_ref: ArtifactRef, report_ref: ArtifactRef) -> Result:
    """Write the export, then check it twice before the gate decides: against the model as trained
    (``merge_verified``) and through its pipeline against the report (``export_reloads``)."""
    from finetune_assets.export import merge_check, reload_check
    from finetune_assets.export.write import export_model
    from finetune_assets.inference.evaluation import scored_rows
    from finetune_assets.report.model_card import without_front_matter

    recipe, task = work.recipe, get_task(work.recipe)
    report = json.loads(Path(report_ref.path).read_text())
    lineage = ancestry(evaluation_report=report_ref, finetuned_model=model_ref)
    probe_text = report["tuned"]["samples"][0]["text"] if report["tuned"]["samples"] else "hello"
    started = time.monotonic()
    probe = export_model(task, Path(model_ref.path), report, lineage, work.staging, probe_text, work.final)
    work.log.info(
        f"exported to {work.final} ({time.monotonic() - started:.1f}s); "
        f"pipeline probe: {rounded(probe['probe_output'])}"
    )
    rows = scored_rows(recipe, Path(model_ref.lineage[TOKENIZED_SPLITS]["path"]))
    merge = merge_check.verify(task, Path(model_ref.path), work.staging, rows)
    reloads = reload_check.verify(task, work.staging, report, rows, work.final)
    answers = Markdown(reloads.pop("answers"))
    kept = {key: report_ref.info[key] for key in ("metrics", "test_rows", "rows_key") if key in report_ref.info}
    gguf_checks, gguf_metadata = _gguf_files(work, rows) if recipe.publish.gguf else ({}, {})
    return {**kept, "checks": {merge_check.CHECK: merge, reload_check.CHECK: reloads, **gguf_checks}}, {
        "pipeline_task": task.pipeline_task,
        **gguf_metadata,
        "pipeline_probe": Json(probe),
        **{f"merge_check_{key}": value for key, value in merge["figures"].items()},
        "export_reloads_answers": answers,
        # The card as the UI shows it: its front matter (kept in the file, for the hub) would render as a heading.
        "model_card": Markdown(without_front_matter((work.staging / "README.md").read_text())),
        **{name: float(value) for name, value in report["tuned"]["metrics"].items()},
        "test_rows": report["test_rows"],
    }


def _gguf_files(work: StageWork, rows) -> Result:
    """``publish.gguf``: the GGUF files and Modelfile written into the export, then ``gguf_verified``
    (its outcome for the export's checks, and metadata: each file's size and sha256)."""
    from finetune_assets.export import gguf, gguf_check
    from finetune_assets.models.tokenizer import load_tokenizer

    task = get_task(work.recipe)
    started = time.monotonic()
    files = gguf.write(work.recipe, work.staging, load_tokenizer(str(work.staging), work.recipe))
    seconds = time.monotonic() - started
    work.log.info(f"GGUF files written in {seconds:.1f}s: {', '.join(path.name for path in files)}")
    started = time.monotonic()
    outcome = gguf_check.verify(task, work.staging, rows)
    return {gguf_check.CHECK: outcome}, {
        "gguf_files": Json(gguf.describe(files)),
        "gguf_seconds": round(seconds, 1),
        "gguf_check_seconds": round(time.monotonic() - started, 1),
        **{f"gguf_check_{key}": value for key, value in outcome["figures"].items()},
    }
