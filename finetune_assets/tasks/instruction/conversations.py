"""Chat records in the formats people publish, as the instruction family's rows.

Recognised in the rows as read (``raw_dataset`` keeps them as they are):

- OpenAI chat: ``messages: [{role, content}, ...]`` with roles ``system``, ``user``, ``assistant``;
- ShareGPT: ``conversations: [{from, value}, ...]`` with ``system``, ``human``, ``gpt`` (``user`` and
  ``assistant`` are accepted too);
- Alpaca: ``instruction``, optional ``input``, ``output``: one exchange whose question is the
  instruction followed by the input.

A conversation becomes one row: ``system`` (its leading system message, or empty), ``prompt`` and
``response`` (the last user turn and the answer to it) and ``history`` (the turns before them, as
JSON). Every assistant turn carries loss in training, not only the last (see
:mod:`finetune_assets.tasks.causal_lm.chat`). A trailing question without an answer is left out.
A record that is not a usable conversation (no answer, an unknown role, turns that do not
alternate, a system message after the start) gets a ``problem`` and is dropped with a receipt.
"""

from __future__ import annotations

import json

import pandas as pd

ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}
FORMATS = {"messages": ("role", "content"), "conversations": ("from", "value")}  # column: (role key, text key)


def detect(raw: pd.DataFrame) -> str | None:
    """Which chat format the rows are in (a key of :data:`FORMATS`, or ``"alpaca"``), if any."""
    for column in FORMATS:
        if column in raw.columns:
            return column
    return "alpaca" if {"instruction", "output"} <= set(raw.columns) else None


def unpack(raw: pd.DataFrame, found: str) -> pd.DataFrame:
    """The rows as ``prompt``, ``response``, ``system``, ``history`` and ``problem`` columns."""
    if found == "alpaca":
        inputs = raw["input"] if "input" in raw.columns else pd.Series("", index=raw.index)
        rows = [
            exchange_row([("user", _question(instruction, extra)), ("assistant", text_of(output))])
            for instruction, extra, output in zip(raw["instruction"], inputs, raw["output"])
        ]
    else:
        role_key, text_key = FORMATS[found]
        rows = [exchange_row(role_turns(record, role_key, text_key)) for record in raw[found]]
    return pd.DataFrame(rows, index=raw.index)


def turns_of(history: str) -> list[dict]:
    """The ``history`` column's turns."""
    return json.loads(history) if history else []


def is_history(value: str) -> bool:
    """``value`` is a JSON list of user and assistant turns in alternation, starting with a user turn."""
    try:
        turns = turns_of(value)
    except (TypeError, ValueError):
        return False
    expected = ["user", "assistant"] * (len(turns) // 2)
    return (
        isinstance(turns, list)
        and [t.get("role") if isinstance(t, dict) else None for t in turns] == expected
        and all(isinstance(t.get("content"), str) for t in turns)
    )


def user_text(prompt: str, history: str) -> str:
    """Everything the user said in a conversation, in order: what identifies its input."""
    return " ".join([turn["content"] for turn in turns_of(history) if turn["role"] == "user"] + [prompt])


def role_turns(record, role_key: str, text_key: str) -> list[tuple[str, str]] | str:
    """``(role, text)`` pairs with the roles named as in :data:`ROLES`, or what is wrong."""
    if isinstance(record, str) or not hasattr(record, "__iter__"):
        return f"not a list of turns ({type(record).__name__})"
    pairs = []
    for number, turn in enumerate(record, start=1):
        role = str(turn.get(role_key, "")) if isinstance(turn, dict) else ""
        if role.lower() not in ROLES:
            return f"turn {number} has role {role!r}; known roles are {', '.join(sorted(ROLES))} (in '{role_key}')"
        pairs.append((ROLES[role.lower()], text_of(turn.get(text_key))))
    return pairs


def exchange_row(turns: list[tuple[str, str]] | str) -> dict:
    """A conversation ending with an answer as one row (``prompt``, ``response``, ``system``,
    ``history``, ``problem``), or a row that only says what is wrong (``turns`` is the problem)."""
    empty = {"prompt": "", "response": "", "system": "", "history": "[]"}
    if isinstance(turns, str):
        return {**empty, "problem": turns}
    opened = bool(turns) and turns[0][0] == "system"
    system, rest = (turns[0][1], turns[1:]) if opened else ("", turns)
    if rest and rest[-1][0] == "user":
        rest = rest[:-1]  # a last question nobody answered teaches nothing
    roles = [role for role, _ in rest]
    if "assistant" not in roles:
        return {**empty, "problem": "no assistant turn"}
    if "system" in roles:
        return {**empty, "problem": f"a system message at turn {roles.index('system') + 1 + opened}, after the start"}
    if roles != ["user", "assistant"] * (len(roles) // 2):
        wrong = next(i for i, role in enumerate(roles) if role != ("user", "assistant")[i % 2])
        return {
            **empty,
            "problem": f"turns do not alternate user and assistant (turn {wrong + 1 + opened} is {roles[wrong]})",
        }
    history = [{"role": role, "content": text} for role, text in rest[:-2]]
    return {
        "prompt": rest[-2][1],
        "response": rest[-1][1],
        "system": system,
        "history": json.dumps(history, ensure_ascii=False),
        "problem": "",
    }


def _question(instruction, extra) -> str:
    instruction, extra = text_of(instruction), text_of(extra)
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction


def text_of(value) -> str:
    """A cell as text: missing values (None, NaN) are empty."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
