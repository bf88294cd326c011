"""Stage metadata as Dagster metadata: the one place that knows Dagster's metadata types.

Stages report plain numbers and text plus the small types of
:mod:`finetune_assets.report.values`; here they become ``MetadataValue``s, floats rounded for a
person to read (4 significant digits: ``0.8838``, not ``0.8837761519702221``; the files keep every
digit). A pandera row schema
becomes the ``dagster/column_schema`` Dagster shows on the asset's page, through dagster-pandera.
"""

from __future__ import annotations

import warnings

from dagster import MetadataValue

from finetune_assets.report.values import FilePath, Json, Markdown, rounded

_MAKERS = {
    Markdown: lambda v: MetadataValue.md(v.text),
    FilePath: lambda v: MetadataValue.path(v.path),
    Json: lambda v: MetadataValue.json(rounded(v.data)),
}


def to_dagster(metadata: dict) -> dict:
    """``metadata`` with every report value turned into its ``MetadataValue`` and floats rounded."""
    return {
        key: _MAKERS[type(value)](value) if type(value) in _MAKERS else rounded(value)
        for key, value in metadata.items()
    }


def column_schema(schema) -> dict:
    """A pandera ``DataFrameModel`` as Dagster column metadata (types, checks, descriptions)."""
    from dagster_pandera import pandera_schema_to_dagster_type

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dagster-pandera marks this function beta
        dagster_type = pandera_schema_to_dagster_type(schema)
    return {"dagster/column_schema": dagster_type.metadata["schema"].schema}
