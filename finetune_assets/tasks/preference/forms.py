"""Preference data in the forms people publish, read into the family's canonical rows.

Recognised in the rows as read (``raw_dataset`` keeps them as they are), column names after the
recipe's ``dataset.columns`` mapping:

- pairs, TRL's standard form: ``chosen`` and ``rejected``, each a text or a list of ``{role,
  content}`` messages, with an explicit ``prompt`` (a text or messages) or an implicit one (the
  turns, or for plain texts the words, both conversations start with);
- UltraFeedback's binarized records: a text ``prompt`` and ``chosen``/``rejected`` conversations
  that repeat it as their first user turn (the repetition is recognised and taken off);
- Anthropic HH transcripts: ``chosen`` and ``rejected`` texts of ``"\\n\\nHuman: ...\\n\\nAssistant:
  ..."`` turns, differing only in the last answer;
- KTO's unpaired rows: ``prompt``, ``completion`` and a ``label`` (true: desirable, false:
  undesirable).

Each becomes one canonical row: ``system`` (a leading system message, or empty), ``history`` (the
earlier turns, JSON), ``prompt`` (the last user turn), ``chosen`` and ``rejected`` (the two answers
to it) and ``paired``. A KTO row is unpaired: its completion is ``chosen`` when desirable and
``rejected`` when not, the other side empty. A record that cannot be read this way (a field that is
neither text nor messages, an unknown role, a label that is not true or false, two conversations
that differ before their last answer) stops the run with a :class:`DataError` naming the source, the
record and the field.
"""

from __future__ import annotations

import re

import pandas as pd

from finetune_assets.errors import DataError
from finetune_assets.tasks.instruction import conversations

FORMS = {"pairs": ("chosen", "rejected"), "unpaired": ("completion", "label")}
_TRANSCRIPT_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_LABELS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def detect(columns) -> str | None:
    """Which form (a key of :data:`FORMS`) rows with these columns are in, if any."""
    return next((form for form, needed in FORMS.items() if set(needed) <= set(columns)), None)


def unpack(raw: pd.DataFrame, form: str, source: str) -> pd.DataFrame:
    """The rows as canonical columns (``prompt``, ``chosen``, ``rejected``, ``system``, ``history``,
    ``paired``); ``source`` names the data in errors."""
    prompts = raw["prompt"] if "prompt" in raw.columns else pd.Series(None, index=raw.index, dtype=object)
    first, second = FORMS[form]
    rows = []
    for number, (prompt, a, b) in enumerate(zip(prompts, raw[first], raw[second]), start=1):
        where = f"{source}: record {number}"
        read = _pair if form == "pairs" else _unpaired
        rows.append(read(None if _missing(prompt) else _turns(prompt, "prompt", "user", where), a, b, where))
    return pd.DataFrame(rows, index=raw.index)


def _pair(prompt: list | None, chosen, rejected, where: str) -> dict:
    chosen = _turns(chosen, "chosen", "assistant", where)
    rejected = _turns(rejected, "rejected", "assistant", where)
    if prompt is None:
        prompt, chosen, rejected = _implicit_prompt(chosen, rejected)
    answers = {
        "chosen": _answer(prompt, chosen, "chosen", where),
        "rejected": _answer(prompt, rejected, "rejected", where),
    }
    return {**_exchange(prompt, where), **answers, "paired": True}


def _unpaired(prompt: list | None, completion, label, where: str) -> dict:
    if prompt is None:
        raise DataError(f"{where}, field 'prompt': missing; an unpaired row needs the prompt its completion answers")
    answer = _answer(prompt, _turns(completion, "completion", "assistant", where), "completion", where)
    desirable = _label(label, where)
    return {
        **_exchange(prompt, where),
        "chosen": answer if desirable else "",
        "rejected": "" if desirable else answer,
        "paired": False,
    }


def _turns(value, field: str, role: str, where: str) -> list[tuple[str, str]]:
    """A cell as ``(role, text)`` turns: a list of messages, an Anthropic-HH transcript, or a plain
    text (one turn of ``role``)."""
    if _missing(value) or isinstance(value, str):
        text = conversations.text_of(value)
        return _transcript(text) if _TRANSCRIPT_TURN.search(text) else [(role, text)]
    if not hasattr(value, "__iter__") or isinstance(value, dict):
        raise DataError(f"{where}, field '{field}': a {type(value).__name__}, neither a text nor a list of messages")
    turns = conversations.role_turns(list(value), "role", "content")
    if isinstance(turns, str):
        raise DataError(f"{where}, field '{field}': {turns}")
    return turns


def _transcript(text: str) -> list[tuple[str, str]]:
    """``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` as turns (text before the first header is dropped)."""
    parts = _TRANSCRIPT_TURN.split(text)
    return [(_HH_ROLES[speaker], said.strip()) for speaker, said in zip(parts[1::2], parts[2::2])]


def _implicit_prompt(chosen: list, rejected: list) -> tuple[list, list, list]:
    """The turns both conversations start with, and what follows in each. Two plain texts share
    their first words instead: the prompt ends at the last space before they differ."""
    if len(chosen) == len(rejected) == 1 and chosen[0][0] == rejected[0][0] == "assistant":
        a, b = chosen[0][1], rejected[0][1]
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        cut = a.rfind(" ", 0, same + 1) + 1
        return [("user", a[:cut].strip())], [("assistant", a[cut:].strip())], [("assistant", b[cut:].strip())]
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _answer(prompt: list, turns: list, field: str, where: str) -> str:
    """The one assistant answer ``turns`` add to ``prompt`` (a conversation may repeat the prompt
    before it, as UltraFeedback's do)."""
    answer = turns[len(prompt) :] if turns[: len(prompt)] == prompt and len(turns) > len(prompt) else turns
    if len(answer) != 1 or answer[0][0] != "assistant":
        raise DataError(
            f"{where}, field '{field}': after the prompt it holds {len(answer)} turn(s) "
            f"({', '.join(role for role, _ in answer) or 'none'}); a preference compares single assistant "
            "answers to the same conversation"
        )
    return answer[0][1]


def _exchange(prompt: list, where: str) -> dict:
    """``system``, ``history`` and ``prompt`` of the conversation the answers reply to."""
    row = conversations.exchange_row([*prompt, ("assistant", "answer")])
    if row["problem"] or not prompt or prompt[-1][0] != "user":
        problem = row["problem"] or "it does not end with a user turn"
        raise DataError(f"{where}, field 'prompt': not a conversation to answer ({problem})")
    return {"prompt": row["prompt"], "system": row["system"], "history": row["history"]}


def _label(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    found = _LABELS.get(str(value).strip().lower())
    if found is None:
        raise DataError(f"{where}, field 'label': {value!r}; a label is true (desirable) or false (undesirable)")
    return found


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))
