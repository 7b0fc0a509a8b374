"""The feature SQL on Spark: the same definitions, transpiled by sqlglot.

`features.groups` holds each group's SQL once, in DuckDB's dialect. The Spark engine
(`clm features build --engine spark`) registers the raw tables and a `snapshots(as_of)`
table as temporary views, runs `spark_sql(group)`, casts the result to the declared
types (`features.groups.arrow_schema`'s rule: floats as double, the rest as strings) and
writes each date's snapshot as a folder of Parquet part files, range-partitioned and
sorted by customer_id (at most ROWS_PER_PART rows a file), so that the parts read in name order give the rows sorted by
customer_id (`features.snapshots.snapshot_parts`), the layout the local batch and Feast's
source glob (`features.snapshots.SNAPSHOT_GLOB`) read. A date's folder is written under
`WORKSPACE/features/.spark-tmp` and renamed in once complete. Nothing here restates a
feature.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from clm.domain import Table
from clm.rawdb import EMPTY_TABLES, empty_table_sql, raw_tables
from clm.workspace import Workspace
from features.groups import FeatureGroup, arrow_schema
from features.snapshots import snapshot_rows

if TYPE_CHECKING:  # PySpark is optional, imported where used
    from pyspark.sql import DataFrame

# `spark` below is a SparkSession, classic (pyspark.sql.SparkSession) or Spark Connect's
# (pyspark.sql.connect.session.SparkSession), two unrelated classes: typed Any.

SNAPSHOT_DATE = "_snapshot_date"  # the partition column of a batch's output, one folder per date
SPARK_TYPES = {pa.float64(): "double", pa.string(): "string"}
ROWS_PER_PART = 250_000  # rows per Parquet part file of a snapshot (about 10 MB)


def spark_sql(group: FeatureGroup) -> str:
    """The group's SQL in Spark's dialect; raises if any construct has no Spark form."""
    return _transpile(group.sql)


def _transpile(sql: str) -> str:
    """DuckDB's SQL in Spark's dialect, with DuckDB's numbers: a literal with a decimal point
    (`86400.0`) is a DOUBLE (Spark would read a DECIMAL and round quotients to a few
    places), and `epoch(t)` keeps its fraction of a second (Spark's UNIX_TIMESTAMP drops it)."""
    def as_duckdb_computes(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Literal) and node.is_number and "." in node.this:
            return exp.cast(node.copy(), exp.DataType.Type.DOUBLE)
        if isinstance(node, exp.TimeToUnix):
            micros = exp.Anonymous(this="UNIX_MICROS", expressions=[node.this.copy()])
            return exp.Div(this=micros, expression=exp.cast(exp.Literal.number("1000000.0"), exp.DataType.Type.DOUBLE))
        return node

    tree = sqlglot.parse_one(sql, read="duckdb").transform(as_duckdb_computes)
    return tree.sql(dialect="spark", unsupported_level=ErrorLevel.RAISE)


def register_raw_tables(spark: Any, workspace: Workspace, tables: set[Table]) -> None:
    """Each raw table as a temporary view named after it (as `clm.rawdb` does for DuckDB)."""
    for table in tables:
        spark.read.parquet(str(workspace.table_path(table).resolve())).createOrReplaceTempView(table.value)
    for table in EMPTY_TABLES.keys() - tables:
        spark.sql(_transpile(empty_table_sql(table))).createOrReplaceTempView(table.value)


def compute_group(spark: Any, group: FeatureGroup, dates: list[pd.Timestamp]) -> DataFrame:
    """One group's features at the given as-of instants, as a Spark DataFrame of the
    declared types, with the partition column SNAPSHOT_DATE."""
    from pyspark.sql import functions as F

    rows = [(d.to_pydatetime(),) for d in dates]
    spark.createDataFrame(rows, "as_of timestamp").createOrReplaceTempView("snapshots")
    frame = spark.sql(spark_sql(group))
    declared = arrow_schema(group, pa.timestamp("us", tz="UTC"))  # the one rule, as DuckDB's output is cast
    typed = [F.col(f.name).cast("timestamp" if pa.types.is_timestamp(f.type) else SPARK_TYPES[f.type]).alias(f.name)
             for f in declared]
    return frame.select(*typed, F.date_format("event_timestamp", "yyyy-MM-dd").alias(SNAPSHOT_DATE))


def write_group(spark: Any, frame: DataFrame, group_folder: Path, scratch: Path, dates: list[pd.Timestamp]) -> int:
    """Write a computed batch as one snapshot folder per date; returns the rows written.
    Sorted by (date, customer_id) across tasks, each task's file split every ROWS_PER_PART
    rows: part files in name order hold the date's customers in order."""
    out = scratch / group_folder.name
    shutil.rmtree(out, ignore_errors=True)
    (frame.orderBy(SNAPSHOT_DATE, "customer_id").write.partitionBy(SNAPSHOT_DATE)
     .option("compression", "zstd").option("maxRecordsPerFile", ROWS_PER_PART).parquet(str(out)))
    rows = 0
    for as_of in dates:
        day = f"{as_of:%Y-%m-%d}"
        target = group_folder / f"{day}.parquet"
        written = out / f"{SNAPSHOT_DATE}={day}"
        if not written.exists():  # nobody had signed up yet: an empty snapshot, as DuckDB writes it
            spark.createDataFrame([], frame.drop(SNAPSHOT_DATE).schema).coalesce(1).write.parquet(str(written))
        for stray in written.glob("[._]*"):  # _SUCCESS and checksums: not part of the snapshot
            stray.unlink()
        rows += snapshot_rows(written)
        group_folder.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        written.rename(target)
    shutil.rmtree(out, ignore_errors=True)
    return rows


def build_on_spark(spark: Any, workspace: Workspace, groups: list[FeatureGroup], batches: list[list[pd.Timestamp]],
                   group_folder: Callable[[FeatureGroup], Path], progress: Callable[[], None]) -> int:
    """Every group at every batch of dates (see `features.build.build_features`); rows written."""
    register_raw_tables(spark, workspace, raw_tables(workspace))
    scratch = workspace.root / "features" / ".spark-tmp"
    rows = 0
    try:
        for batch in batches:
            for group in groups:
                rows += write_group(spark, compute_group(spark, group, batch), group_folder(group), scratch, batch)
                progress()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows
