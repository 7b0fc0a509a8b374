"""The feature SQL for Spark: the same definitions, transpiled by sqlglot.

`features.groups` holds each group's SQL once, in DuckDB's dialect. For a base that
outgrows one machine, the same SQL runs on Spark after transpiling: register the raw
tables and a `snapshots(as_of)` table as temporary views, then run `spark_sql(group)`.
Nothing here restates a feature.
"""
from __future__ import annotations

import sqlglot
from sqlglot.errors import ErrorLevel

from features.groups import FeatureGroup


def spark_sql(group: FeatureGroup) -> str:
    """The group's SQL in Spark's dialect; raises if any construct has no Spark form."""
    return sqlglot.transpile(group.sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)[0]
