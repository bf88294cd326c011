"""The promotion gate's decision as a typed value, and the one reading of a decision's text.

The gate decides a :class:`Decision`; its :attr:`~Decision.text` is what the export's metadata and
``evaluation_history.jsonl`` keep ("promoted (first export)", "kept champion", "not promoted: ...",
with " (sweep variant x)" after it in a sweep). The history is read back by the champion store (the
newest promoted export) and its plot; rows written by older versions hold only the text, so every
reader asks :func:`was_promoted`, which reads the verdict from the text the same way for all rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SWEEP_SUFFIX = " (sweep variant "


class Verdict(StrEnum):
    PROMOTED_FIRST = "promoted (first export)"
    PROMOTED = "promoted"
    KEPT = "kept champion"
    NOT_PROMOTED = "not promoted"
    ALREADY_CHAMPION = "already champion"
    ROLLED_BACK = "rolled back"  # a person made an earlier champion the champion again (rollback)

    @property
    def promotes(self) -> bool:
        """Whether the export the row names becomes the champion."""
        return self in (Verdict.PROMOTED_FIRST, Verdict.PROMOTED, Verdict.ROLLED_BACK)

    @classmethod
    def of_text(cls, text: str) -> Verdict | None:
        """The verdict a decision's text states, or None for a text no version of the gate wrote."""
        for verdict in sorted(cls, key=lambda v: len(v.value), reverse=True):  # "promoted (first..." first
            if text == verdict.value or text.startswith((f"{verdict.value}:", f"{verdict.value}{SWEEP_SUFFIX}")):
                return verdict
        return None


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...] = ()  # why not promoted: the blockers, or why the champion could not be scored
    variant: str = ""  # the sweep variant judged ("" without a sweep)

    @property
    def promoted(self) -> bool:
        return self.verdict.promotes

    @property
    def text(self) -> str:
        """The decision in words, as the metadata and the history keep it."""
        said = f"{self.verdict.value}: {'; '.join(self.reasons)}" if self.reasons else self.verdict.value
        return f"{said}{SWEEP_SUFFIX}{self.variant})" if self.variant else said


def was_promoted(row: dict) -> bool:
    """Whether a history row records a promotion, whichever version of the gate wrote it."""
    verdict = Verdict.of_text(str(row.get("decision", "")))
    return verdict is not None and verdict.promotes
