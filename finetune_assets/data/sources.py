"""Where data and models come from: a hub id, a local path, ``package:<pkg>/<path>``, or (models
only) ``recipe:<name>``, another recipe's champion as a run pinned it.

One resolver serves datasets and models alike, so a recipe switches from the offline default to
the hub by changing a string, not code. Hub tokens are never handled here: ``huggingface_hub``
reads ``HF_TOKEN`` from the environment itself.
"""

from __future__ import annotations

import importlib.util
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from finetune_assets.data.formats import gguf, line_files
from finetune_assets.data.formats.chatterbot import read_corpus
from finetune_assets.data.formats.line_files import BadLine
from finetune_assets.errors import SourceError
from finetune_assets.recipes.schema import RECIPE_PREFIX, BaseChampion

FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class Source:
    kind: str  # "hub", "local" or "package"
    location: str  # hub id, or an absolute local path
    ref: str  # as written in the recipe

    def describe(self) -> str:
        return self.ref if self.ref == self.location else f"{self.ref} ({self.location})"


def resolve(ref: str, relative_to: Path) -> Source:
    """Decide what ``ref`` names. Relative paths are relative to the recipe's folder."""
    if ref.startswith("package:"):
        package, _, inner = ref.removeprefix("package:").partition("/")
        try:  # finds the folder without running the package (dotted names import their parent)
            spec = importlib.util.find_spec(package)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            raise SourceError(f"{ref}: package '{package}' is not installed (pip install it first)")
        if not spec.submodule_search_locations:
            raise SourceError(f"{ref}: '{package}' is a single module, not a package folder with data")
        path = Path(spec.submodule_search_locations[0]) / inner
        if not path.exists():
            raise SourceError(f"{ref}: '{inner}' does not exist inside package '{package}' ({path})")
        return Source("package", str(path), ref)
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = relative_to / path
    looks_local = ref.startswith((".", "/", "~")) or Path(ref).suffix.lower() in FILE_FORMATS
    if path.exists() or looks_local:
        return Source("local", str(path.resolve()), ref)
    return Source("hub", ref, ref)


def read_table(
    source: Source,
    *,
    format: str | None,
    encoding: str,
    hub_config: str | None,
    hub_split: str | None,
    on_bad_lines: str = "error",
    skipped: list[BadLine] | None = None,
) -> pd.DataFrame:
    """Read the rows exactly as they are; every failure names the file (and line) and the fix.
    With ``on_bad_lines="skip"`` malformed csv/jsonl lines are left out and appended to ``skipped``."""
    if source.kind == "hub":
        return _read_hub(source.location, hub_config, hub_split)
    path = Path(source.location)
    if not path.exists():
        raise SourceError(f"{path}: data file not found (check dataset.source in the recipe)")
    if format == "chatterbot":
        return read_corpus(path, encoding)
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_FORMATS)
        if not files:
            raise SourceError(f"{path}: folder holds no {'/'.join(FILE_FORMATS)} file")
    frames = []
    for file in files:
        frame, bad = _read_file(file, format, encoding, on_bad_lines)
        frames.append(frame)
        if skipped is not None:
            skipped.extend(bad)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _read_file(path: Path, format: str | None, encoding: str, on_bad_lines: str) -> tuple[pd.DataFrame, list[BadLine]]:
    fmt = format or FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(f"{path}: unknown file type; set dataset.format to csv, jsonl, json or parquet")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty")
    bad = []
    if fmt == "csv":
        frame, bad = line_files.read_csv(path, line_files.decode(path, encoding), on_bad_lines)
    elif fmt == "jsonl":
        frame, bad = line_files.read_jsonl(path, line_files.decode(path, encoding), on_bad_lines)
    elif fmt == "json":
        text = line_files.decode(path, encoding)
        try:
            json.loads(text)
        except ValueError as exc:
            raise SourceError(f"{path}: line {exc.lineno}, column {exc.colno}: malformed json ({exc.msg})") from None
        try:
            frame = pd.read_json(io.StringIO(text), dtype=False)
        except ValueError as exc:
            raise SourceError(f"{path}: cannot read as a table of records: {exc}") from None
    else:
        try:
            frame = pd.read_parquet(path)
        except (ValueError, OSError) as exc:
            raise SourceError(f"{path}: cannot read as parquet: {exc}") from None
    if frame.empty:
        raise SourceError(f"{path}: the file holds no rows" + (f" ({len(bad)} malformed lines skipped)" if bad else ""))
    return frame, bad


def _read_hub(dataset_id: str, config: str | None, split: str | None) -> pd.DataFrame:
    import datasets

    try:
        loaded = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # the hub client raises many types; all mean the same to a user
        raise SourceError(
            f"hub dataset '{dataset_id}' could not be loaded ({type(exc).__name__}: {exc}). "
            "Without network, point dataset.source at a local file or a package: reference"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        parts = [ds.to_pandas().assign(source_split=name) for name, ds in loaded.items()]
        return pd.concat(parts, ignore_index=True)
    return loaded.to_pandas()


@dataclass(frozen=True)
class DatasetRead:
    frame: pd.DataFrame  # the rows exactly as the source holds them
    source: str  # a description of the source
    skipped: list[BadLine]  # malformed lines left out under dataset.on_bad_lines: skip


def read_dataset(recipe) -> DatasetRead:
    """A recipe's rows exactly as its source holds them, what the source is, and what was skipped."""
    spec = recipe.dataset
    source = resolve(spec.source, recipe.source_file.parent)
    skipped: list[BadLine] = []
    frame = read_table(
        source,
        format=spec.format,
        encoding=spec.encoding,
        hub_config=spec.hub_config,
        hub_split=spec.hub_split,
        on_bad_lines=spec.on_bad_lines,
        skipped=skipped,
    )
    return DatasetRead(frame, source.describe(), skipped)


def model_location(ref: str, relative_to: Path, pinned: BaseChampion | None = None) -> str:
    """What ``from_pretrained`` should receive: a local folder or a hub id (a GGUF file becomes
    its dequantized copy, see :mod:`finetune_assets.data.formats.gguf`); for ``recipe:<name>``, the
    champion export a run ``pinned`` (:mod:`finetune_assets.promotion.base_champion`)."""
    if ref.startswith(RECIPE_PREFIX):
        if pinned is None:
            raise SourceError(
                f"base_model {ref}: another recipe's champion is pinned by a pipeline run; run the recipe's "
                "assets, or hand the training process the recipe.json a run saved next to its weights"
            )
        return pinned.path
    source = resolve(ref, relative_to)
    if source.kind != "hub" and source.location.endswith(".gguf"):
        return str(gguf.plain_copy(Path(source.location)))
    if source.kind != "hub" and not Path(source.location).is_dir():
        raise SourceError(f"{ref}: a model must be a folder with config.json ({source.location})")
    return source.location


SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # what from_pretrained reads
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def require_safetensors(ref: str, relative_to: Path) -> None:
    """Fail before any data is read when a local base model has no safetensors weights.

    Pickle weights (``pytorch_model.bin``) can run any code while they load, so every model is
    loaded with ``use_safetensors=True``; this check says so in the first stage instead of the
    fourth. Hub ids are left to that same load, which refuses a pickle-only repository.
    """
    if ref.startswith(RECIPE_PREFIX):  # a champion export, which this project writes as safetensors
        return
    source = resolve(ref, relative_to)
    if source.kind == "hub" or source.location.endswith(".gguf"):  # GGUF holds no pickle either
        return
    folder = Path(source.location)
    if not folder.is_dir():
        raise SourceError(f"base_model {ref}: a model must be a folder with config.json ({folder})")
    names = sorted(path.name for path in folder.iterdir())
    if any(name in SAFE_WEIGHTS for name in names):
        return
    pickles = [name for name in names if name.endswith(PICKLE_WEIGHTS) or name.endswith(".bin.index.json")]
    found = f"holds pickle weights only ({', '.join(pickles)})" if pickles else "holds no model weights"
    raise SourceError(
        f"base_model {ref}: {folder} {found} and no model.safetensors. This project loads safetensors only, "
        "because a pickle file can run any code while it loads. Convert the folder once, where you trust its "
        f"origin: python -c \"from transformers import AutoModel, AutoTokenizer; p = '{folder}'; "
        "AutoModel.from_pretrained(p).save_pretrained(p + '-safetensors'); "
        "AutoTokenizer.from_pretrained(p).save_pretrained(p + '-safetensors')\" (with your task's class, e.g. "
        "AutoModelForCausalLM, to keep the model's head), then set base_model to the new folder."
    )
