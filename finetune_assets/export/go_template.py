"""A small renderer for the Go ``text/template`` constructs Ollama's Modelfile templates use, so the
``gguf_verified`` check can render the TEMPLATE written into a Modelfile without Ollama.

It knows: literal text, ``{{- ... -}}`` trimming, ``{{ range $i, $m := .Messages }}``, ``{{ if }}``,
``{{ else if }}``, ``{{ else }}``, ``{{ end }}``, printing a value, and the functions ``eq``, ``ne``,
``and``, ``or``, ``not``, ``len`` and ``index`` on fields (``.Role``), variables (``$i``, ``$.Messages``),
strings, integers and parenthesised calls. Anything else raises ``ValueError`` rather than being
rendered differently from Go.
"""

from __future__ import annotations

import json
import re

ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)
RANGE = re.compile(r"range (\$\w+), (\$\w*) := (.+)")
TERM = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+')
FUNCTIONS = {
    "eq": lambda first, *rest: any(first == other for other in rest),
    "ne": lambda a, b: a != b,
    "and": lambda *values: all(values),
    "or": lambda *values: any(values),
    "not": lambda value: not value,
    "len": len,
    "index": lambda items, at: items[at],
}


def render(template: str, messages: list[dict]) -> str:
    """``template`` rendered with Ollama's ``.Messages`` (``.Role``, ``.Content``) set from ``messages``."""
    nodes, _, stop = _block(_lex(template), 0)
    if stop is not None:
        raise ValueError(f"unexpected {{{{ {stop} }}}} in the template")
    root = {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    return _run(nodes, root, {"$": root})


def _lex(template: str) -> list[tuple[str, str]]:
    """Text and actions in order, the text beside ``{{-`` / ``-}}`` trimmed as Go trims it."""
    tokens, at = [], 0
    for match in ACTION.finditer(template):
        text = template[at : match.start()]
        if match[1]:
            text = text.rstrip()
        if tokens and tokens[-1][0] == "trim":
            tokens.pop()
            text = text.lstrip()
        tokens += [("text", text), ("action", match[2])] + ([("trim", "")] if match[3] else [])
        at = match.end()
    text = template[at:]
    if tokens and tokens[-1][0] == "trim":
        tokens.pop()
        text = text.lstrip()
    return [*tokens, ("text", text)]


def _block(tokens, i: int):
    """Nodes up to the next ``end`` or ``else`` (returned as the stop) or the end of the template."""
    nodes = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
        elif value == "end" or value.startswith("else"):
            return nodes, i, value
        elif value.startswith("if "):
            node, i = _if(tokens, i, value.removeprefix("if "))
            nodes.append(node)
        elif match := RANGE.fullmatch(value):
            body, i, stop = _block(tokens, i)
            if stop != "end":
                raise ValueError(f"range without end (found {stop})")
            nodes.append(("range", match[1], match[2], _parse(match[3]), body))
        else:
            nodes.append(("print", _parse(value)))
    return nodes, i, None


def _if(tokens, i: int, condition: str):
    branches = []
    while True:
        body, i, stop = _block(tokens, i)
        branches.append((_parse(condition) if condition is not None else None, body))
        if stop == "end":
            return ("if", branches), i
        if stop == "else":
            condition = None
        elif stop is not None and stop.startswith("else if "):
            condition = stop.removeprefix("else if ")
        else:
            raise ValueError(f"if without end (found {stop})")


def _parse(expression: str):
    """A pipeline as nested lists: a call is ``[name, args...]``, a value a one-item list."""
    terms, stack = [], []
    for term in TERM.findall(expression):
        if term == "(":
            stack.append(terms)
            terms = []
        elif term == ")":
            inner, terms = terms, stack.pop()
            terms.append(inner)
        else:
            terms.append(term)
    if stack:
        raise ValueError(f"unbalanced parentheses in {expression!r}")
    return terms


def _run(nodes, dot, variables: dict) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "print":
            out.append(str(_value(node[1], dot, variables)))
        elif node[0] == "if":
            body = next((body for cond, body in node[1] if cond is None or _value(cond, dot, variables)), [])
            out.append(_run(body, dot, variables))
        else:
            _, index_name, item_name, items, body = node
            for at, item in enumerate(_value(items, dot, variables)):
                out.append(_run(body, item, {**variables, index_name: at, item_name: item}))
    return "".join(out)


def _value(terms, dot, variables: dict):
    if isinstance(terms, str):
        return _atom(terms, dot, variables)
    if len(terms) == 1:
        return _value(terms[0], dot, variables)
    name, *arguments = terms
    if name not in FUNCTIONS:
        raise ValueError(f"function {name!r} is not known to this renderer")
    return FUNCTIONS[name](*(_value(argument, dot, variables) for argument in arguments))


def _atom(term: str, dot, variables: dict):
    if term.startswith('"'):
        return json.loads(term)
    if term.isdigit():
        return int(term)
    if term in ("true", "false"):
        return term == "true"
    if term.startswith("."):
        return dot[term[1:]]
    if term.startswith("$."):
        return variables["$"][term[2:]]
    if term in variables:
        return variables[term]
    raise ValueError(f"{term!r} is not known to this renderer")
