"""Markdown tables for metadata: the UI renders them, and they read well as plain text."""

from finetune_assets.report.values import rounded


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(_cell(row.get(h, "")) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    return str(rounded(value)).replace("|", "\\|").replace("\n", " ")
