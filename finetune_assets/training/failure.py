"""What a failed training leaves behind, so the step that launched it can say what failed and
decide whether a retry can help.

The training process runs apart from the Dagster step (another process, maybe another machine), and
a non-zero exit code alone says nothing. So on its way out the process appends one record to
``failures.jsonl`` in its checkpoint folder, which every attempt of the same training shares (bad
input goes to the attempt's own output folder instead: the checkpoint folder may be another
training's, which is never written to): the exception's type and message, the last frames of this
project's code it passed through, the optimizer step it had reached, and whether it was bad input. ``finetuned_model`` reads the record
of the attempt that just failed (:func:`explain`) and raises :class:`TrainingFailed`, whose message
is the step's failure in the UI and the CLI.

Retrying resumes from the newest checkpoint, which helps after a lost process (killed, out of
memory, a node gone) and never after a failure that would only happen again:

- bad input (a setting the process refused) or an exception before the first optimizer step
  (the model, the data or the settings cannot train at all);
- the same exception at the same step as the attempt before it.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from finetune_assets.errors import ProcessFailed

FAILURES = "failures.jsonl"
OUR_FRAMES = 4  # the last frames in finetune_assets the exception passed through


class TrainingFailed(ProcessFailed):
    """The training process failed; the message says how, ``retryable`` whether a retry can help."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def entry_of(error: BaseException, bad_input: bool = False) -> dict:
    """The failure as a record: the exception, our last frames, the step it reached."""
    frames = [
        f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
        if "finetune_assets" in frame.filename
    ]
    return {
        "time": time.time(),
        "type": type(error).__name__,
        "message": str(error).strip()[:2000],
        "frames": frames[-OUR_FRAMES:],
        "step": int(getattr(error, "training_step", 0)),
        "bad_input": bad_input,
    }


def record(folder: Path, error: BaseException, bad_input: bool = False) -> dict:
    """Append the failure of this attempt to ``folder``'s record and return it."""
    entry = entry_of(error, bad_input)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / FAILURES).open("a") as file:
        file.write(json.dumps(entry) + "\n")
    return entry


def describe(entry: dict) -> str:
    """One paragraph: the exception, where, at which step."""
    where = f" (in {' <- '.join(reversed(entry['frames']))})" if entry["frames"] else ""
    return f"{entry['type']}: {entry['message']}{where}, at optimizer step {entry['step']}"


def explain(error: ProcessFailed, folder: Path, started: float, attempt_folder: Path | None = None) -> TrainingFailed:
    """The failure of the attempt started at ``started`` (epoch seconds), told and judged from the
    records the process left in ``folder`` (the checkpoints, shared by the attempts) or, for bad
    input, in ``attempt_folder`` (its ``--out``: the checkpoints may be another training's, left
    untouched); ``error``: what the launcher saw (an exit code)."""
    entries = _entries(folder)
    this = [entry for entry in entries + _entries(attempt_folder) if entry["time"] >= started]
    if not this:
        return TrainingFailed(
            f"the training process failed without saying why ({error}): it was probably killed (out of "
            "memory, a signal, a lost machine). A retry resumes from the newest checkpoint.",
            retryable=True,
        )
    entry = this[-1]
    earlier = entries[: entries.index(entry)] if entry in entries else entries
    retry, why = retryable(entry, earlier[-1] if earlier else None)
    return TrainingFailed(f"training failed: {describe(entry)}. {why}", retryable=retry)


def retryable(entry: dict, previous: dict | None) -> tuple[bool, str]:
    """Whether a retry of the attempt that failed with ``entry`` can help, and why (not)."""
    if entry["bad_input"]:
        return False, "Not retried: the process refused its input; fix the setting it names."
    if entry["step"] == 0:
        return False, (
            "Not retried: it failed before the first optimizer step, so the model, the data or the settings "
            "cannot train as they are, and a retry would fail the same way."
        )
    same = previous is not None and all(previous[key] == entry[key] for key in ("type", "message", "step"))
    if same:
        return False, "Not retried: the attempt before failed with the same exception at the same step."
    return True, "A retry resumes from the newest checkpoint."


def _entries(folder: Path | None) -> list[dict]:
    if folder is None:
        return []
    path = folder / FAILURES
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
