"""Writing artifacts so that no reader ever sees half of one, with any number of writers at once.

- :func:`atomic_dir` builds a folder in a staging sibling and puts it in place with one rename.
  When another writer put the same fingerprint's folder in place first, that complete folder is
  kept and ours dropped (same fingerprint, same inputs). Only ``replace=True`` (a forced
  recomputation, or a damaged folder) swaps them, in one ``renameat2(RENAME_EXCHANGE)`` on Linux,
  so the folder is never missing, not even for a moment.
- :func:`write_text` does the same for one small file (``champion.json``, the references between
  assets): a temp file with a name no other writer uses, then ``os.replace``.
- Modes: what a plain ``mkdir``/``open`` would give under the process's umask (0755 folders,
  0644 files under umask 022), never tempfile's private 0700/0600, so another account (a model
  server) can read an export.
- Each staging folder has a lock file that its writer holds (``filelock``) while it writes. A
  killed writer's lock is free again, so a staging folder whose lock can be taken has no live
  writer; :func:`remove_stale_staging` deletes it the next time that stage runs.

Hand-written on purpose: ``renameat2`` has no Python binding (a few lines of ``ctypes``, with a
short-window fallback where it is missing).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

STAGING, LOCK, FOLDER_LOCK = ".partial", ".partial.lock", ".staging.lock"
ASIDE = STAGING + ".replaced"  # the replaced folder where no atomic exchange exists


@contextlib.contextmanager
def atomic_dir(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; when the block succeeds it becomes ``final``.

    If ``final`` appears meanwhile (another writer), it is kept, unless ``replace``. On error the
    staging folder is removed and ``final`` stays as it was.
    """
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(parent)
    token = f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging, lock_file = parent / (token + STAGING), parent / (token + LOCK)
    writer = FileLock(lock_file)
    with FileLock(parent / FOLDER_LOCK):  # a cleaner never sees the folder without its held lock
        writer.acquire()
        os.mkdir(staging)  # mode 0777 minus the umask, like any folder the user makes
    try:
        yield staging
        _give_plain_modes(staging)
        _put_in_place(staging, final, replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after an exchange it holds the replaced folder
        writer.release()
        lock_file.unlink(missing_ok=True)


def remove_stale_staging(parent: Path) -> list[Path]:
    """Delete the staging folders under ``parent`` whose writer is gone; return them."""
    if not parent.is_dir():
        return []
    removed = []
    with FileLock(parent / FOLDER_LOCK):
        names = {entry.name for entry in parent.iterdir()}
        tokens = {name.removesuffix(STAGING) for name in names if name.endswith(STAGING)}
        tokens |= {name.removesuffix(LOCK) for name in names if name.endswith(LOCK)}
        tokens |= {name.removesuffix(ASIDE) for name in names if name.endswith(ASIDE)}
        for token in sorted(tokens):
            lock = FileLock(parent / (token + LOCK))
            try:
                lock.acquire(blocking=False)  # a live writer holds it: leave its folder alone
            except Timeout:
                continue
            try:
                for leftover in (parent / (token + STAGING), parent / (token + ASIDE)):
                    if leftover.exists():
                        shutil.rmtree(leftover, ignore_errors=True)
                        removed.append(leftover)
            finally:
                lock.release()
                (parent / (token + LOCK)).unlink(missing_ok=True)
    return removed


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename; concurrent writers never share a temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as handle:  # 0666 minus the umask
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def point_link(link: Path, target_name: str) -> None:
    """Make ``link`` a symlink to ``target_name`` (a sibling) in one rename: readers see the old
    target or the new one, never no link."""
    temp = link.with_name(f".{link.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target_name, temp)
    try:
        os.replace(temp, link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _give_plain_modes(folder: Path) -> None:
    """Folders get ``folder``'s own mode (mkdir applied the umask); files the same without the
    execute bits unless they had one. Libraries that write through ``tempfile`` leave 0600/0700."""
    folder_mode = stat.S_IMODE(folder.stat().st_mode)
    file_mode = folder_mode & 0o666
    for top, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(top, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                continue
            executable = stat.S_ISDIR(info.st_mode) or info.st_mode & stat.S_IXUSR
            os.chmod(path, folder_mode if executable else file_mode)


def _put_in_place(staging: Path, final: Path, replace: bool) -> None:
    try:
        os.rename(staging, final)  # fails when final exists and is not empty
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if replace and not _exchange(staging, final):
        aside = staging.with_name(staging.name.removesuffix(STAGING) + ASIDE)
        os.rename(final, aside)  # no atomic exchange here: a short window without final
        try:
            os.rename(staging, final)
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    # Otherwise another writer put the same fingerprint in place first: keep its folder.


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.ENOENT:  # the other folder went away meanwhile: a plain rename will do
        os.rename(a, b)
        return True
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))
