"""Stage metadata as Dagster metadata: the one place that knows Dagster's metadata types.

Stages report plain numbers and text plus the small types of
:mod:`finetune_assets.report.values`; here they become ``MetadataValue``s. A pandera row schema
becomes the ``dagster/column_schema`` Dagster shows on the asset's page, through dagster-pandera.
"""

from __future__ import annotations

import warnings

from dagster import MetadataValue

from finetune_assets.report.values import FilePath, Json, Markdown

_MAKERS = {Markdown: lambda v: MetadataValue.md(v.text), FilePath: lambda v: MetadataValue.path(v.path),
           Json: lambda v: MetadataValue.json(v.data)}


def to_dagster(metadata: dict) -> dict:
    """``metadata`` with every report value turned into its ``MetadataValue``."""
    return {key: _MAKERS[type(value)](value) if type(value) in _MAKERS else value
            for key, value in metadata.items()}


def column_schema(schema) -> dict:
    """A pandera ``DataFrameModel`` as Dagster column metadata (types, checks, descriptions)."""
    from dagster_pandera import pandera_schema_to_dagster_type

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dagster-pandera marks this function beta
        dagster_type = pandera_schema_to_dagster_type(schema)
    return {"dagster/column_schema": dagster_type.metadata["schema"].schema}
