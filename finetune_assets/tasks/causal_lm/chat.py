"""Conversations for causal LMs: the chat template's rendering, and the loss mask read off it.

A conversation is a list of ``{role, content}`` turns: an optional system message, then user and
assistant turns in alternation. Training, evaluation and the exported pipelines all render it with
the tokenizer's chat template (:data:`PLAIN_TEMPLATE` when it has none), so the model is asked
exactly what it was taught.

The loss mask is derived from the template, never hard-coded. Each assistant turn is what the
rendering of the conversation *through* that turn adds to the rendering *up to* it with the
generation prompt (the assistant header): its tokens carry the loss up to and including the
tokenizer's EOS, which the template writes to end the turn. The header, anything after the EOS
(a newline between turns), and every system and user token carry none. This needs a template whose
rendering of a conversation's beginning is the beginning of its full rendering, token for token
(then generation, which renders only the beginning, sees the very tokens training saw). Every
conversation is checked; a template that rewrites earlier turns or never ends an answer with EOS
stops the run with :class:`~finetune_assets.errors.TemplateError` naming it, so a template change
cannot shift the mask silently.

A conversation longer than ``max_length`` tokens loses whole exchanges (a user turn and its
answer), oldest first, keeping the system message; when the last exchange alone is still too long,
its prompt loses its oldest tokens (see :func:`encode`).
"""

from __future__ import annotations

from finetune_assets.errors import TemplateError

IGNORE = -100  # the label that cross-entropy skips

# For models without a chat template (base models such as GPT-2): plain headers, EOS after answers.
PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Question:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Answer:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Answer:\n' }}{% endif %}"
)


def with_chat_template(tokenizer):
    """``tokenizer``, given :data:`PLAIN_TEMPLATE` if it has no chat template of its own."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_TEMPLATE
    return tokenizer


def conversation(prompt: str, response: str | None = None, system: str = "", history: list[dict] = ()) -> list[dict]:
    """The turns of one exchange after ``history``; an empty system message leaves the template's
    default, and without ``response`` the conversation ends with the question."""
    turns = [{"role": "system", "content": system}] if system else []
    turns += [{"role": turn["role"], "content": turn["content"]} for turn in history]
    turns.append({"role": "user", "content": prompt})
    return turns + ([{"role": "assistant", "content": response}] if response is not None else [])


def prompt_ids(tokenizer, turns: list[dict]) -> list[int]:
    """Token ids of ``turns`` (ending with a user turn) and the assistant header: where generation starts."""
    return _tokens(tokenizer, _render(with_chat_template(tokenizer), turns, generation_prompt=True))


def encode(tokenizer, turns: list[dict], max_length: int | None) -> dict:
    """One training example from a conversation that ends with an assistant turn: ``input_ids``,
    ``attention_mask``, ``labels`` (-100 except on assistant turns), ``length``, ``truncated`` and
    ``turns_dropped`` (exchanges left out, oldest first, to fit ``max_length``). It ends with the
    last answer's EOS: what the template writes after it would carry no loss.

    When the last exchange alone exceeds ``max_length``, its prompt loses its oldest tokens first
    (the text nearest the answer matters most) but keeps at least half the budget when it needs it;
    the answer is cut only when it does not fit in the rest, and only then loses its EOS.
    """
    with_chat_template(tokenizer)
    dropped = 0
    ids, labels = masked_tokens(tokenizer, turns)
    while max_length is not None and len(ids) > max_length and _answers(turns) > 1:
        turns = _without_oldest_exchange(turns)
        dropped += 1
        ids, labels = masked_tokens(tokenizer, turns)
    ids, labels = _through_last_answer(ids, labels)
    truncated = dropped > 0
    if max_length is not None and len(ids) > max_length:
        ids, labels = _cut(ids, labels, max_length)
        truncated = True
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": labels,
        "length": len(ids),
        "truncated": truncated,
        "turns_dropped": dropped,
    }


def masked_tokens(tokenizer, turns: list[dict]) -> tuple[list[int], list[int]]:
    """The rendered conversation's token ids, and its labels: the ids of each assistant turn's
    tokens through its EOS, -100 everywhere else. Raises :class:`TemplateError` when the template
    does not allow that (see the module's docstring)."""
    ids = _tokens(tokenizer, _render(tokenizer, turns))
    labels = [IGNORE] * len(ids)
    for index, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        before = _tokens(tokenizer, _render(tokenizer, turns[:index], generation_prompt=True))
        through = _tokens(tokenizer, _render(tokenizer, turns[: index + 1]))
        if through[: len(before)] != before or ids[: len(through)] != through:
            shorter, longer = (before, through) if through[: len(before)] != before else (through, ids)
            raise TemplateError(_unstable(tokenizer, index, shorter, longer))
        answer = through[len(before) :]
        if tokenizer.eos_token_id not in answer:
            raise TemplateError(
                f"{describe_template(tokenizer)} does not end an assistant turn with the EOS token "
                f"{tokenizer.eos_token!r} (turn {index} renders as {tokenizer.decode(answer)!r}), so a model "
                "trained on it could not learn to stop. Use a template that writes eos_token after each answer."
            )
        end = len(before) + answer.index(tokenizer.eos_token_id) + 1
        labels[len(before) : end] = ids[len(before) : end]
    return ids, labels


def prompt_before_last_answer(input_ids: list[int], labels: list[int]) -> list[int]:
    """The tokens of a training example before its last answer: the prompt that answer replies to,
    exactly as training rendered it."""
    start = len(labels)
    while start > 0 and labels[start - 1] == IGNORE:  # skip what follows the last answer
        start -= 1
    while start > 0 and labels[start - 1] != IGNORE:  # then the answer itself
        start -= 1
    return list(input_ids[:start])


def describe_template(tokenizer) -> str:
    """Names the template a tokenizer renders with, for error messages."""
    which = "the plain template" if tokenizer.chat_template == PLAIN_TEMPLATE else "the chat template"
    return f"{which} of the tokenizer at {tokenizer.name_or_path or '(unsaved tokenizer)'}"


def _render(tokenizer, turns: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)


def _tokens(tokenizer, text: str) -> list[int]:
    """The template writes the special tokens (BOS included), so the tokenizer adds none."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _answers(turns: list[dict]) -> int:
    return sum(turn["role"] == "assistant" for turn in turns)


def _without_oldest_exchange(turns: list[dict]) -> list[dict]:
    """``turns`` without the first user turn and everything up to and including its answer."""
    system = turns[:1] if turns[0]["role"] == "system" else []
    rest = turns[len(system) :]
    first_answer = next(i for i, turn in enumerate(rest) if turn["role"] == "assistant")
    return system + rest[first_answer + 1 :]


def _through_last_answer(ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
    end = max(i for i, label in enumerate(labels) if label != IGNORE) + 1
    return ids[:end], labels[:end]


def _cut(ids: list[int], labels: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """One exchange (ending with its answer) cut to ``max_length``: the prompt's oldest tokens go
    first (it keeps at least half the budget when it needs it), then the answer's last ones."""
    start = next(i for i, label in enumerate(labels) if label != IGNORE)
    asked, answer = ids[:start], ids[start:]
    answer = answer[: max_length - min(len(asked), max_length // 2)]
    asked = asked[len(asked) - (max_length - len(answer)) :]
    return asked + answer, [IGNORE] * len(asked) + answer


def _unstable(tokenizer, index: int, shorter: list[int], longer: list[int]) -> str:
    at = next((i for i, (a, b) in enumerate(zip(shorter, longer)) if a != b), len(shorter))
    return (
        f"{describe_template(tokenizer)} is not prefix-stable: rendering the conversation up to assistant turn "
        f"{index} gives tokens that its longer rendering does not start with (from token {at}: "
        f"{tokenizer.decode(shorter[at : at + 12])!r} against {tokenizer.decode(longer[at : at + 12])!r}). The loss "
        "mask is read off the template and generation renders only the beginning of a conversation, so "
        "both need a template that renders earlier turns the same way whatever follows; templates that "
        "rewrite earlier turns (e.g. drop an earlier answer's reasoning) cannot be used here. Set "
        "tokenizer.chat_template to a prefix-stable template."
    )
