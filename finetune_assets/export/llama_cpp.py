"""llama.cpp's own GGUF converter (``convert_hf_to_gguf.py``), run on the merged export.

llama.cpp publishes its converter in its repository only, not as a module on PyPI. The source
distribution of ``llama-cpp-python`` vendors llama.cpp whole (MIT licence, "The ggml authors"), the
converter, its ``conversion/`` package and its ``gguf-py`` included. ``python -m
finetune_assets.export.llama_cpp [sdist]`` (the ``gguf`` extra's setup step) takes that pinned sdist
from PyPI (or a file already downloaded), checks its sha256 and keeps only the converter's files and
llama.cpp's LICENSE under :func:`converter_dir`; nothing is compiled. The converter runs in a
process of its own with the vendored ``gguf-py`` it was written against.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from finetune_assets.errors import RecipeError
from finetune_assets.pipeline.atomic import atomic_dir

VERSION = "0.3.36"  # llama-cpp-python, whose sdist vendors llama.cpp
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
KEPT = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
VENDORED = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"


def converter_dir() -> Path:
    """Where the converter is kept: ``$FINETUNE_LLAMA_CPP_DIR``, else the user's cache."""
    configured = os.environ.get("FINETUNE_LLAMA_CPP_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "finetune_assets" / f"llama.cpp-{VERSION}"


def converter() -> Path:
    """The converter script, or an error saying how to get it."""
    script = converter_dir() / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise RecipeError(
            f"publish.gguf needs llama.cpp's converter at {script}: run `python -m finetune_assets.export.llama_cpp` "
            f"once (it takes llama-cpp-python {VERSION}'s source from PyPI, about 77 MB, and keeps the converter)"
        )
    return script


def convert(folder: Path, out_file: Path, outtype: str) -> None:
    """The Hugging Face model ``folder`` written as GGUF ``out_file`` with weights of ``outtype``."""
    command = [sys.executable, str(converter()), str(folder), "--outfile", str(out_file), "--outtype", outtype]
    env = {key: value for key, value in os.environ.items() if key != "NO_LOCAL_GGUF"}  # its own gguf-py
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"llama.cpp's converter failed on {folder} ({outtype}): {done.stderr[-2000:]}")


def fetch(sdist: Path | None = None) -> Path:
    """Keep the converter's files from llama-cpp-python's sdist (``sdist``, else downloaded)."""
    target = converter_dir()
    with tempfile.TemporaryDirectory() as scratch:
        archive = sdist or _download(Path(scratch))
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != SHA256:
            raise RuntimeError(f"{archive} has sha256 {digest}, not llama-cpp-python {VERSION}'s {SHA256}")
        with tarfile.open(archive) as tar, atomic_dir(target) as staging:
            members = [m for m in tar.getmembers() if _kept(m.name)]
            for member in members:
                member.name = member.name.removeprefix(VENDORED)
            tar.extractall(staging, members=members, filter="data")
    return target


def _kept(name: str) -> bool:
    inside = name.removeprefix(VENDORED)
    return name.startswith(VENDORED) and any(inside == k or (k.endswith("/") and inside.startswith(k)) for k in KEPT)


def _download(folder: Path) -> Path:
    """The pinned sdist, fetched by pip from the package index this machine's pip is set up for."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={VERSION}", "--dest", str(folder)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    found = sorted(folder.glob(f"llama_cpp_python-{VERSION}.tar.gz"))
    if done.returncode or not found:
        raise RuntimeError(f"pip could not download llama-cpp-python {VERSION}'s sdist: {done.stderr[-2000:]}")
    return found[0]


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
