"""MkDocs hook: the recipe reference, generated from the pydantic schema at build time.

Every key of :class:`finetune_assets.recipes.schema.Recipe`, nested sections walked into dotted
keys (``training.max_length``), with its type, default and ``Field`` description, replaces the
``<!-- recipe-reference -->`` marker of ``recipe-reference.md``. Written from the schema on every
build, the reference cannot drift from what the loader accepts; ``tests/test_docs.py`` fails when a
key has no description.
"""

from __future__ import annotations

import html
import sys
import types
import typing
from pathlib import Path

# The docs describe this checkout's schema, not whichever copy of the package the venv installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from finetune_assets.recipes.schema import Recipe

MARKER = "<!-- recipe-reference -->"
PAGE = "recipe-reference.md"
BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def keys(model: type[BaseModel] = Recipe, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, pydantic FieldInfo) for every field of ``model`` and of the sections it nests."""
    found = []
    for name, field in model.model_fields.items():
        found.append((prefix + name, field))
        section = _section(field.annotation)
        if section is not None:
            found.extend(keys(section, f"{prefix}{name}."))
    return found


def _section(annotation) -> type[BaseModel] | None:
    """The nested model an annotation holds (``KubernetesSpec``, ``ScheduleSpec | None``), if any."""
    for candidate in typing.get_args(annotation) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def type_name(annotation) -> str:
    """The annotation as a reader writes YAML for it: ``"lora" | "qlora"``, ``int | null``."""
    if annotation is type(None):
        return "null"
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f'"{value}"' for value in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(arg) for arg in typing.get_args(annotation))
    if annotation is typing.Any:
        return "mapping or list"
    section = _section(annotation)
    if section is not None:
        return "section"
    if typing.get_origin(annotation) in (list, dict):
        return f"{typing.get_origin(annotation).__name__}[{', '.join(map(type_name, typing.get_args(annotation)))}]"
    return {Path: "path"}.get(annotation, annotation.__name__)


def default(field) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default is PydanticUndefined else field.default
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f'`"{value}"`' if isinstance(value, str) else f"`{value!r}`"


def bounds(field) -> str:
    """Pydantic's numeric bounds (``gt=0`` ...) as ``> 0``."""
    return ", ".join(
        f"{BOUNDS[name]} {getattr(rule, name)}"
        for rule in field.metadata
        for name in BOUNDS
        if getattr(rule, name, None) is not None
    )


def render() -> str:
    """The reference: one table per top-level section, top-level settings first."""
    tables: dict[str, list[str]] = {"": []}
    for key, field in keys():
        head = key.split(".")[0] if "." in key or _section(field.annotation) else ""
        kind = type_name(field.annotation) + (f" ({bounds(field)})" if bounds(field) else "")
        text = html.escape(field.description, quote=False).replace("|", "\\|")  # <pkg> is no HTML tag
        tables.setdefault(head, []).append(f"| `{key}` | {kind} | {default(field)} | {text} |")
    parts = []
    for head, rows in tables.items():
        parts.append(f"## `{head}`" if head else "## Top level")
        parts.append("\n| key | type | default | what it does |\n| --- | --- | --- | --- |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs event: fill the marker of the reference page."""
    if page.file.src_uri == PAGE:
        return markdown.replace(MARKER, render())
    return markdown
