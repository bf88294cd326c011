"""Validating cleaned rows against the task's pandera model, with errors a person can act on."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type

from finetune_assets.errors import DataError


def validate_rows(schema: type[pa.DataFrameModel], frame: pd.DataFrame, where: str) -> dict:
    """Raise :class:`DataError` naming column, check and failing rows; else return schema metadata."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DataError(f"{where}: {describe_failures(exc.failure_cases)}") from None
    dagster_type = pandera_schema_to_dagster_type(schema)
    return {"dagster/column_schema": dagster_type.metadata["schema"].schema}


def describe_failures(cases: pd.DataFrame, per_check: int = 3) -> str:
    """One line per (column, check) with a few failing row indexes and values."""
    lines = [f"{len(cases)} schema violation(s)"]
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        shown = ", ".join(f"row {row}: {str(value)[:60]!r}"
                          for row, value in zip(group["index"].head(per_check), group["failure_case"]))
        lines.append(f"  column '{column}' failed {check} ({len(group)} rows; {shown})")
    return "\n".join(lines)
