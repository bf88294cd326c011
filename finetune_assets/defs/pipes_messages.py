"""The training process's Pipes messages, read one whole line at a time.

Dagster's file message readers tail the message file with ``readline()``, which at the end of the
file returns whatever part of a line the writer has put there so far. The training process's last
message (its figures, with the loss curve as an image) is tens of kilobytes, written in more than
one piece; caught half-written, it fails to parse, the reader thread stops, and the asset loses its
metadata (a clean-clone test run saw exactly this: ``JSONDecodeError: Unterminated string``).
:class:`WholeLineMessageReader` is Dagster's temporary-file reader with one change: a line counts
once its newline has arrived. Written by hand because Dagster's readers keep that loop private.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dagster import PipesMessageReader
from dagster_pipes import PipesDefaultMessageWriter

POLL_SECONDS = 0.01


def whole_lines(path: Path, finished: Callable[[], bool]) -> Iterator[str]:
    """The lines appended to ``path`` until ``finished()``, each yielded only once its newline has
    arrived; what is there when ``finished()`` turns true is read to the end (a last line without
    its newline included)."""
    pending = ""
    with path.open(encoding="utf-8") as stream:
        while True:
            piece = stream.readline()
            if piece:
                pending += piece
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
            elif finished():
                pending += stream.read()  # written between the last read and the end
                break
            else:
                time.sleep(POLL_SECONDS)
    yield from (line for line in pending.splitlines() if line.strip())


class WholeLineMessageReader(PipesMessageReader):
    """Reads the messages the process writes to a temporary file, whole lines only."""

    @contextlib.contextmanager
    def read_messages(self, handler) -> Iterator[dict]:
        with tempfile.TemporaryDirectory(prefix="pipes-") as folder:
            path = Path(folder) / "messages"
            path.touch()
            done = threading.Event()
            reader = threading.Thread(target=self._read, args=(path, handler, done), daemon=True)
            reader.start()
            try:
                yield {PipesDefaultMessageWriter.FILE_PATH_KEY: str(path)}
            finally:
                done.set()
                reader.join()

    @staticmethod
    def _read(path: Path, handler, done: threading.Event) -> None:
        try:
            for line in whole_lines(path, done.is_set):
                handler.handle_message(json.loads(line))
        except Exception:
            handler.report_pipes_framework_exception("WholeLineMessageReader reader thread", sys.exc_info())
            raise

    def no_messages_debug_text(self) -> str:
        return "Attempted to read messages from a local temporary file, whole lines only."
