"""Validating cleaned rows against the task's pandera model, with findings a person can act on."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa


def schema_failures(schema: type[pa.DataFrameModel], frame: pd.DataFrame) -> pd.DataFrame:
    """Every failing (column, check, row, value); empty when the rows satisfy the schema."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return pd.DataFrame(columns=["column", "check", "index", "failure_case"])


def describe_failures(cases: pd.DataFrame, per_check: int = 3) -> str:
    """One line per (column, check) with a few failing row indexes and values."""
    lines = [f"{len(cases)} schema violation(s)"]
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        shown = ", ".join(
            f"row {row}: {str(value)[:60]!r}"
            for row, value in zip(group["index"].head(per_check), group["failure_case"])
        )
        lines.append(f"  column '{column}' failed {check} ({len(group)} rows; {shown})")
    return "\n".join(lines)
