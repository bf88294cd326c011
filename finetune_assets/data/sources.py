"""Where data and models come from: a hub id, a local path, or ``package:<pkg>/<path>``.

One resolver serves datasets and models alike, so a recipe switches from the offline default to
the hub by changing a string, not code. Hub tokens are never handled here: ``huggingface_hub``
reads ``HF_TOKEN`` from the environment itself.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from finetune_assets.data.formats import gguf
from finetune_assets.data.formats.chatterbot import read_corpus
from finetune_assets.errors import SourceError

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


def read_table(source: Source, *, format: str | None, encoding: str, hub_config: str | None,
               hub_split: str | None) -> pd.DataFrame:
    """Read the rows exactly as they are; every failure names the file and the fix."""
    if source.kind == "hub":
        return _read_hub(source.location, hub_config, hub_split)
    path = Path(source.location)
    if not path.exists():
        raise SourceError(f"{path}: data file not found (check dataset.source in the recipe)")
    if format == "chatterbot":
        return read_corpus(path, encoding)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_FORMATS)
        if not files:
            raise SourceError(f"{path}: folder holds no {'/'.join(FILE_FORMATS)} file")
        return pd.concat([_read_file(p, format, encoding) for p in files], ignore_index=True)
    return _read_file(path, format, encoding)


def _read_file(path: Path, format: str | None, encoding: str) -> pd.DataFrame:
    fmt = format or FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(f"{path}: unknown file type; set dataset.format to csv, jsonl, json or parquet")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty")
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=False)
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, encoding=encoding, dtype=False)
        elif fmt == "json":
            frame = pd.read_json(path, encoding=encoding, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{path}: byte {exc.start} is not valid {encoding} ({exc.reason}); set dataset.encoding "
            "in the recipe to the file's encoding (for example latin-1)") from None
    except pd.errors.ParserError as exc:
        raise SourceError(f"{path}: malformed {fmt}: {exc}; fix or remove that line") from None
    except ValueError as exc:
        raise SourceError(f"{path}: cannot read as {fmt}: {exc}") from None
    if frame.empty:
        raise SourceError(f"{path}: the file holds no rows")
    return frame


def _read_hub(dataset_id: str, config: str | None, split: str | None) -> pd.DataFrame:
    import datasets

    try:
        loaded = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # the hub client raises many types; all mean the same to a user
        raise SourceError(
            f"hub dataset '{dataset_id}' could not be loaded ({type(exc).__name__}: {exc}). "
            "Without network, point dataset.source at a local file or a package: reference") from None
    if isinstance(loaded, datasets.DatasetDict):
        parts = [ds.to_pandas().assign(source_split=name) for name, ds in loaded.items()]
        return pd.concat(parts, ignore_index=True)
    return loaded.to_pandas()


def read_dataset(recipe) -> tuple[pd.DataFrame, str]:
    """A recipe's rows exactly as its source holds them, and a description of that source."""
    spec = recipe.dataset
    source = resolve(spec.source, recipe.source_file.parent)
    frame = read_table(source, format=spec.format, encoding=spec.encoding, hub_config=spec.hub_config,
                       hub_split=spec.hub_split)
    return frame, source.describe()


def model_location(ref: str, relative_to: Path) -> str:
    """What ``from_pretrained`` should receive: a local folder or a hub id (a GGUF file becomes
    its dequantized copy, see :mod:`finetune_assets.data.formats.gguf`)."""
    source = resolve(ref, relative_to)
    if source.kind != "hub" and source.location.endswith(".gguf"):
        return str(gguf.plain_copy(Path(source.location)))
    if source.kind != "hub" and not Path(source.location).is_dir():
        raise SourceError(f"{ref}: a model must be a folder with config.json ({source.location})")
    return source.location
