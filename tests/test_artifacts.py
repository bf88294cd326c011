"""Artifact folders under concurrency and failure: writers racing on one fingerprint, plain file
modes, and staging folders left by a killed writer."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from finetune_assets.pipeline.atomic import atomic_dir, remove_stale_staging, write_text


def _write_repeatedly(final: str, replace: bool, rounds: int, errors) -> None:
    for i in range(rounds):
        try:
            with atomic_dir(Path(final), replace=replace) as staging:
                (staging / "weights.bin").write_bytes(os.urandom(4096))
                (staging / "artifact.json").write_text(f'{{"writer": {os.getpid()}, "round": {i}}}')
        except Exception as exc:  # reported to the test, which fails on any
            errors.put(f"{type(exc).__name__}: {exc}")


def _read_repeatedly(final: str, whole_listing: bool, until: float, misses) -> None:
    """Look for the artifact by path until ``until``; with ``whole_listing`` also list it, which
    must show both files (a folder whose content never changes)."""
    seen = 0
    while time.monotonic() < until:
        try:
            complete = os.path.exists(os.path.join(final, "artifact.json"))
            if whole_listing:
                complete = complete and sorted(os.listdir(final)) == ["artifact.json", "weights.bin"]
        except FileNotFoundError:
            complete = False
        seen += 1
        if not complete:
            misses.put(seen)


@pytest.mark.parametrize("replace", [False, True], ids=["second-writer-reuses", "forced-writer-swaps"])
def test_two_writers_of_one_fingerprint_never_leave_a_reader_without_the_folder(tmp_path, replace):
    final = tmp_path / "stage" / "fingerprint"
    _write_repeatedly(str(final), False, 1, None)  # the first complete artifact
    context = multiprocessing.get_context("fork")
    errors, misses = context.Queue(), context.Queue()
    # A forced writer swaps the folder: a reader that listed the old one while it was being
    # deleted sees part of it, as with any replacement; by path the artifact is always there.
    reader = context.Process(target=_read_repeatedly, args=(str(final), not replace, time.monotonic() + 3, misses))
    writers = [context.Process(target=_write_repeatedly, args=(str(final), replace, 40, errors)) for _ in range(2)]
    for process in [reader, *writers]:
        process.start()
    for process in [*writers, reader]:
        process.join(60)
    assert [process.exitcode for process in [reader, *writers]] == [0, 0, 0]
    assert errors.empty(), errors.get()
    assert misses.empty(), f"the folder was missing or incomplete at read {misses.get()}"
    assert sorted(os.listdir(final.parent)) == [".staging.lock", "fingerprint"], "no staging folder left behind"


def test_a_second_writer_keeps_the_first_complete_folder(tmp_path):
    final = tmp_path / "fingerprint"
    with atomic_dir(final) as staging:
        (staging / "artifact.json").write_text("first")
    with atomic_dir(final) as staging:
        (staging / "artifact.json").write_text("second")
    assert (final / "artifact.json").read_text() == "first"
    with atomic_dir(final, replace=True) as staging:
        (staging / "artifact.json").write_text("forced")
    assert (final / "artifact.json").read_text() == "forced"


@pytest.mark.parametrize(
    "umask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)]
)
def test_artifacts_get_plain_modes_under_the_umask(tmp_path, umask, folder_mode, file_mode):
    previous = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "export") as staging:
            inner = Path(tempfile.mkdtemp(dir=staging))  # 0700, as libraries writing through tempfile leave
            handle, weights = tempfile.mkstemp(dir=inner, suffix=".safetensors")  # 0600
            os.close(handle)
            script = staging / "run.sh"
            script.write_text("#!/bin/sh\n")
            script.chmod(0o700)
        write_text(tmp_path / "champion.json", "{}")
    finally:
        os.umask(previous)
    export = tmp_path / "export"
    assert oct(export.stat().st_mode & 0o777) == oct(folder_mode)
    assert oct((export / inner.name).stat().st_mode & 0o777) == oct(folder_mode)
    assert oct((export / inner.name / Path(weights).name).stat().st_mode & 0o777) == oct(file_mode)
    assert oct((export / "run.sh").stat().st_mode & 0o777) == oct(folder_mode), "an executable stays one"
    assert oct((tmp_path / "champion.json").stat().st_mode & 0o777) == oct(file_mode)


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from finetune_assets.pipeline.atomic import atomic_dir
    with atomic_dir(Path(sys.argv[1])) as staging:
        (staging / "half.bin").write_bytes(b"x" * 1000)
        print(staging, flush=True)
        time.sleep(120)
""")


def test_staging_folders_of_a_killed_writer_go_and_a_live_writers_stay(tmp_path):
    stage = tmp_path / "finetuned_model"
    writers, staging = [], []
    for name in ("killed", "alive"):
        writers.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(stage / name)],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
        )
        staging.append(Path(writers[-1].stdout.readline().strip()))
    killed, alive = writers
    try:
        assert all(folder.is_dir() for folder in staging)
        os.kill(killed.pid, signal.SIGKILL)  # as an out-of-memory killer or a lost machine would
        killed.wait(30)
        assert staging[0].is_dir(), "a killed writer leaves its staging folder"
        with atomic_dir(stage / "next") as fresh:  # the stage runs again
            (fresh / "artifact.json").write_text("{}")
        assert not staging[0].exists(), "the next run of the stage removes it"
        assert staging[1].is_dir(), "a live writer's folder is never touched"
        assert remove_stale_staging(stage) == []
    finally:
        alive.kill()
        alive.wait(30)
    assert remove_stale_staging(stage) == [staging[1]]
    assert sorted(p.name for p in stage.iterdir()) == [".staging.lock", "next"]
