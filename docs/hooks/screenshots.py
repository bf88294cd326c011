"""MkDocs hook: the UI test's screenshots on the UI tour page, where that test has taken them.

``tests/test_ui.py`` saves its screenshots into ``$FINETUNE_UI_SHOTS`` (default ``ui-screenshots/``,
ignored by git). They are not committed, so the tour page names each file in a marker,
``<!-- screenshot 01_group_graph.png -->`` (or a pattern: ``06_checks_*.png``). The files that exist
at build time are copied into the site as ``ui/<name>`` and the marker becomes their images;
otherwise it becomes a line that names the file and the test that takes it, so a clean clone
builds with ``--strict``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from mkdocs.structure.files import File

PAGE = "ui-tour.md"
MARKER = re.compile(r"<!-- screenshot (?P<name>[\w.*]+\.png) -->")


def shots_folder() -> Path:
    return Path(os.environ.get("FINETUNE_UI_SHOTS") or Path(__file__).resolve().parents[2] / "ui-screenshots")


def on_files(files, config):
    """MkDocs event: the screenshots that exist join the site under ``ui/``."""
    for shot in sorted(shots_folder().glob("*.png")):
        files.append(File.generated(config, f"ui/{shot.name}", abs_src_path=str(shot)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs event: each marker of the tour page becomes its image, or says how to take it."""
    if page.file.src_uri != PAGE:
        return markdown

    taken = sorted(file.src_uri.removeprefix("ui/") for file in files if file.src_uri.startswith("ui/"))

    def shown(match: re.Match) -> str:
        found = fnmatch.filter(taken, match["name"])
        if found:
            return "\n\n".join(f"![{name}](ui/{name})" for name in found)
        return f"*Screenshot `{match['name']}`: run `pytest tests/test_ui.py` and rebuild the docs to see it here.*"

    return MARKER.sub(shown, markdown)
