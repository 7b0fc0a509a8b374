"""A DuckDB session over a workspace's raw tables, each a view named after its table."""
from __future__ import annotations

import duckdb

from clm.domain import Table
from clm.workspace import Workspace

# Without a subscriptions table (transactions-only workspaces) queries see an empty one.
EMPTY_SUBSCRIPTIONS = (
    "SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS TIMESTAMPTZ) AS event_time, "
    "CAST(NULL AS VARCHAR) AS event, CAST(NULL AS VARCHAR) AS plan, CAST(NULL AS DOUBLE) AS price WHERE false"
)


def raw_tables(workspace: Workspace) -> set[Table]:
    return {t for t in Table if workspace.table_path(t).exists()}


def connect_raw(workspace: Workspace, memory_limit: str = "3GB") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{workspace.root / '.duckdb-tmp'}'")
    tables = raw_tables(workspace)
    for table in tables:
        con.execute(f"CREATE VIEW {table.value} AS SELECT * FROM read_parquet('{workspace.table_path(table)}')")
    if Table.SUBSCRIPTIONS not in tables:
        con.execute(f"CREATE VIEW {Table.SUBSCRIPTIONS.value} AS {EMPTY_SUBSCRIPTIONS}")
    return con
