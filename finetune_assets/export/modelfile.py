"""The Ollama ``Modelfile`` beside the GGUF files: FROM, a TEMPLATE giving the prompt the Hugging Face
chat template gives, the stop strings, and PARAMETER lines from the recipe's ``generation``.

Ollama's templates are Go templates, the Hugging Face ones Jinja: the chat format is read off the
export's own chat template by rendering conversations of marker texts (what each role's turn is
wrapped in, the block written when a conversation has no system message, the generation prompt),
then written as a Go template over ``.Messages``. Templates that rewrite turns (a system message
folded into the first question, trimmed contents) cannot be read this way: the ``gguf_verified``
check then finds the renderings differ and names the Modelfile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from finetune_assets.errors import TemplateError
from finetune_assets.export import go_template

NAME = "Modelfile"
MARKS = {"system": "SYSTEM_MARK_0", "user": "USER_MARK_1", "assistant": "ASSISTANT_MARK_1"}
LATER = {"user": "USER_MARK_2", "assistant": "ASSISTANT_MARK_2"}


@dataclass(frozen=True)
class ChatFormat:
    """What the chat template writes around each turn, read off its renderings."""

    default_system: str  # written before the first turn when there is no system message
    turns: dict  # role -> (prefix, suffix)
    generation: str  # the generation prompt after the last turn


def chat_format(tokenizer) -> ChatFormat:
    """The export tokenizer's chat template as prefixes and suffixes per role."""

    def render(turns, generation_prompt=False) -> str:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)

    chat = [
        {"role": "user", "content": MARKS["user"]},
        {"role": "assistant", "content": MARKS["assistant"]},
        {"role": "user", "content": LATER["user"]},
        {"role": "assistant", "content": LATER["assistant"]},
    ]
    closed, asking = render(chat), render(chat[:3])
    user_suffix = _part(asking, LATER["user"], None)
    assistant_suffix = _part(closed, LATER["assistant"], None)
    assistant_prefix = _without(_part(closed, MARKS["user"], MARKS["assistant"]), user_suffix, None)
    user_prefix = _without(_part(closed, MARKS["assistant"], LATER["user"]), assistant_suffix, None)
    with_system = render([{"role": "system", "content": MARKS["system"]}, *chat])
    return ChatFormat(
        default_system=_without(_part(closed, None, MARKS["user"]), None, user_prefix),
        turns={
            "system": (
                _part(with_system, None, MARKS["system"]),
                _without(_part(with_system, MARKS["system"], MARKS["user"]), None, user_prefix),
            ),
            "user": (user_prefix, user_suffix),
            "assistant": (assistant_prefix, assistant_suffix),
        },
        generation=_without(_part(render(chat[:3], True), LATER["user"], None), user_suffix, None),
    )


def go_template_of(chat: ChatFormat) -> str:
    """The chat format as a Go template over Ollama's ``.Messages`` (no trimming: the text is exact)."""
    for text in [chat.default_system, chat.generation, *(t for pair in chat.turns.values() for t in pair)]:
        if "{{" in text or '"""' in text:
            raise TemplateError(f"the chat template writes {text!r}, which a Modelfile TEMPLATE cannot hold")
    roles = "{{ else if ".join(
        f'eq .Role "{role}" }}}}{prefix}{{{{ .Content }}}}{suffix}' for role, (prefix, suffix) in chat.turns.items()
    )
    return (
        "{{ range $i, $_ := .Messages }}"
        f'{{{{ if and (eq $i 0) (ne .Role "system") }}}}{chat.default_system}{{{{ end }}}}'
        f"{{{{ if {roles}{{{{ end }}}}{{{{ end }}}}{chat.generation}"
    )


def write(folder: Path, gguf_name: str, tokenizer, generation) -> Path:
    """The Modelfile in ``folder``, pointing at ``gguf_name`` beside it."""
    chat = chat_format(tokenizer)
    stops = [tokenizer.eos_token, chat.turns["assistant"][1].strip(), chat.turns["user"][0].strip()]
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{go_template_of(chat)}"""']
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in dict.fromkeys(s for s in stops if s)]
    lines += [f"PARAMETER {name} {value}" for name, value in parameters(generation).items()]
    if generation.num_beams > 1 or generation.no_repeat_ngram_size:
        lines.append("# num_beams and no_repeat_ngram_size have no Ollama equivalent: Ollama decodes without them")
    path = folder / NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def parameters(generation) -> dict:
    """Ollama's decoding parameters for the recipe's ``generation`` (temperature 0: greedy)."""
    found = {"temperature": generation.temperature if generation.do_sample else 0}
    if generation.do_sample:
        found["top_p"] = generation.top_p
    return {**found, "num_predict": generation.max_new_tokens}


def read_template(path: Path) -> str:
    """The TEMPLATE of a Modelfile."""
    match = re.search(r'^TEMPLATE """(.*?)"""$', path.read_text(), re.S | re.M)
    if not match:
        raise TemplateError(f"{path} has no TEMPLATE")
    return match[1]


def served_from(path: Path) -> str:
    """The file a Modelfile's FROM names, relative to its folder."""
    match = re.search(r"^FROM (.+)$", path.read_text(), re.M)
    return match[1].strip() if match else ""


def render(path: Path, turns: list[dict]) -> str:
    """The prompt Ollama builds from ``turns`` with the Modelfile at ``path``."""
    return go_template.render(read_template(path), turns)


def _quoted(text: str) -> str:
    if '"' in text or "\n" in text:
        raise TemplateError(f"the stop string {text!r} cannot be written on a PARAMETER line")
    return f'"{text}"'


def _part(text: str, after: str | None, before: str | None) -> str:
    """The text between two marks (from the start / to the end when one is None)."""
    if (after is not None and after not in text) or (before is not None and before not in text):
        raise TemplateError(
            f"the chat template drops the text of a turn ({after or before}), so no Ollama TEMPLATE is written"
        )
    start = 0 if after is None else text.index(after) + len(after)
    return text[start:] if before is None else text[start : text.index(before, start)]


def _without(text: str, prefix: str | None, suffix: str | None) -> str:
    """``text`` less a ``prefix`` or ``suffix`` it must have, else the template rewrites turns."""
    if (prefix is not None and not text.startswith(prefix)) or (suffix is not None and not text.endswith(suffix)):
        raise TemplateError(
            "the chat template does not wrap each turn alike (it rewrites or joins turns), so no Ollama "
            "TEMPLATE is written for it"
        )
    text = text.removeprefix(prefix or "")
    return text[: len(text) - len(suffix)] if suffix else text
