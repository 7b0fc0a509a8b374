"""A DuckDB session over a workspace's raw tables, each a view named after its table."""
from __future__ import annotations

import duckdb

from clm.domain import Table
from clm.workspace import Workspace

# A workspace may lack the tables the labels and the population read (a transactions-only
# shop has no subscriptions; a subscription business's CRM may bring no payments): queries
# see an empty one, with the contract's columns.
EMPTY_TABLES: dict[Table, dict[str, str]] = {
    Table.SUBSCRIPTIONS: {"customer_id": "VARCHAR", "event_time": "TIMESTAMPTZ", "event": "VARCHAR",
                          "plan": "VARCHAR", "price": "DOUBLE"},
    Table.TRANSACTIONS: {"transaction_id": "BIGINT", "customer_id": "VARCHAR", "event_time": "TIMESTAMPTZ",
                         "kind": "VARCHAR", "amount": "DOUBLE", "discount": "DOUBLE", "status": "VARCHAR",
                         "plan": "VARCHAR"},
}


def empty_table_sql(table: Table) -> str:
    columns = ", ".join(f"CAST(NULL AS {kind}) AS {name}" for name, kind in EMPTY_TABLES[table].items())
    return f"SELECT {columns} WHERE false"


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
    for table in EMPTY_TABLES.keys() - tables:
        con.execute(f"CREATE VIEW {table.value} AS {empty_table_sql(table)}")
    return con
