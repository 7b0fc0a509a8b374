"""Real exports in: a CRM's tables, with its own column names and formats, become a workspace.

    reading.py   files and the values every table shares (ids, dates, amounts)
    tables.py    what each table holds (`TABLES`) and one reader for all of them
    business.py  one business's tables into its workspace, in one call or several
    mapping.py   a mapping file naming each table's file and columns (`clm ingest --mapping`)

A transactions-only business is non-contractual: there are no subscriptions, customers
are inferred from their first purchase (signup_time = first purchase), and churn is the
absence of purchases within a horizon.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clm.domain import Table
from clm.workspace import Workspace
from pipelines.ingest.business import ingest_tables
from pipelines.ingest.reading import EARLIEST_PLAUSIBLE, ReadOptions, detect_separator
from pipelines.ingest.tables import INGEST_TABLES, TABLES, ExportSource, IngestSummary

__all__ = ["INGEST_TABLES", "TABLES", "ExportSource", "IngestSummary", "ReadOptions", "TransactionsSource",
           "detect_separator", "ingest_exported_transactions", "ingest_tables", "ingest_transactions"]


@dataclass(frozen=True)
class TransactionsSource:
    """A transactions export by its three columns (the shortest way to bring one)."""

    path: Path
    customer_col: str
    date_col: str
    amount_col: str
    date_format: str | None = None
    sep: str | None = None
    decimal: str = "."
    skip_bad_rows: bool = False
    encoding: str = "utf-8-sig"
    drop_duplicates: bool = False
    earliest: pd.Timestamp = EARLIEST_PLAUSIBLE

    def source(self) -> ExportSource:
        options = ReadOptions(self.date_format, self.sep, self.decimal, self.skip_bad_rows, self.encoding,
                              self.drop_duplicates, self.earliest)
        columns = {"customer_id": self.customer_col, "event_time": self.date_col, "amount": self.amount_col}
        return ExportSource("transactions", Path(self.path), columns, options)


def ingest_transactions(src: TransactionsSource, workspace: Workspace, replace: bool = False) -> IngestSummary:
    """A transactions export into the workspace (`ingest_tables`)."""
    return ingest_tables([src.source()], workspace, replace)[0]


def ingest_exported_transactions(simulated: Workspace, export: Path, workspace: Workspace) -> IngestSummary:
    """Export a simulated business's paid transactions to the CSV `export` and ingest it as
    a user would: a transactions-only (non-contractual) workspace whose truth lives on in
    `simulated`. For tests and benchmarks of the real-data path."""
    tx = simulated.read_table(Table.TRANSACTIONS, columns=["customer_id", "event_time", "amount", "status"])
    tx[tx.status == "paid"][["customer_id", "event_time", "amount"]].to_csv(export, index=False)
    return ingest_transactions(TransactionsSource(export, "customer_id", "event_time", "amount"), workspace)
