"""Data commands: `clm simulate`, `clm ingest transactions`, `clm validate`."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from clm.dates import parse_day
from clm.errors import ClmError
from clm.limits import CUSTOMERS, DAYS, SEED
from clm.workspace import Workspace
from pipelines.cli.common import (
    DEFAULT_CUSTOMERS,
    DEFAULT_END,
    DEFAULT_SEED,
    DEFAULT_START,
    CustomersOpt,
    EndOpt,
    ReplaceOpt,
    RichReporter,
    SeedOpt,
    StartOpt,
    WorkspaceOpt,
    a_day,
    console,
    help_when_bare,
    user_errors,
)

if TYPE_CHECKING:
    from simulator.engine import SimulationConfig

# The jobs are imported inside each command (here and in every command module): `clm
# --help` and a refused option answer at once, without loading pandas, Feast or MLflow.

ingest_app = typer.Typer(
    help="Bring real exports into a workspace.\n\nExample:  clm ingest transactions sales.csv "
    "--customer-col 'Customer ID' --date-col 'Order Date' --amount-col Total",
    invoke_without_command=True,
)
ingest_app.callback()(help_when_bare)


def simulation_config(customers: int, seed: int, start: str, end: str) -> SimulationConfig:
    """The simulation the options ask for, checked before any work."""
    import pandas as pd

    from simulator.engine import SimulationConfig

    CUSTOMERS.check(customers, "--customers")
    SEED.check(seed, "--seed")
    start_ts, end_ts = parse_day(start, "--start"), parse_day(end, "--end")
    if end_ts < start_ts + pd.Timedelta(days=30):
        raise ClmError(f"--end ({end}) must be at least 30 days after --start ({start}).")
    DAYS.check((end_ts - start_ts).days, "The simulated period (--start to --end, in days)")
    return SimulationConfig(n_customers=customers, seed=seed, start=start_ts, end=end_ts)


@user_errors
def simulate(
    customers: CustomersOpt = DEFAULT_CUSTOMERS,
    seed: SeedOpt = DEFAULT_SEED,
    start: StartOpt = DEFAULT_START,
    end: EndOpt = DEFAULT_END,
    replace: ReplaceOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Simulate a subscription business, with its ground truth, into WORKSPACE/raw.

    Writes customers, subscriptions, transactions, usage, tickets, nps, referrals,
    actions (a logged, randomised policy), ground_truth (true churn/upgrade probabilities
    and stages at each month end) and ground_truth_effects (true effect of each action).

    Examples:

      clm simulate                                   # 5,000 customers, 2024-2025

      clm simulate -n 100000 --seed 7 --start 2023-01-01 --end 2024-12-31 -w big

      clm simulate --seed 8 --replace -w big        # start the workspace over
    """
    ws, config = Workspace.at(workspace), simulation_config(customers, seed, start, end)
    with ws.exclusive("clm simulate"):
        from pipelines.cli import render
        from pipelines.jobs.simulate import simulate as simulate_job

        render.show(simulate_job(ws, config, replace, RichReporter()))


@ingest_app.command("transactions")
@user_errors
def ingest_transactions(
    file: Annotated[Path, typer.Argument(help="CSV (or other delimited text) or Parquet file.")],
    customer_col: Annotated[str, typer.Option("--customer-col", help="Column holding the customer id.")],
    date_col: Annotated[str, typer.Option("--date-col", help="Column holding the purchase date or time.")],
    amount_col: Annotated[str, typer.Option("--amount-col", help="Column holding the amount paid.")],
    date_format: Annotated[
        str | None, typer.Option("--date-format", help="strptime format, e.g. '%d/%m/%Y'; inferred if omitted.")
    ] = None,
    sep: Annotated[
        str | None, typer.Option("--sep", help="Separator: ',', ';', 'tab' or 'whitespace'; detected if omitted.")
    ] = None,
    decimal: Annotated[str, typer.Option("--decimal", help="Decimal mark of amounts: '.' or ','.")] = ".",
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Leave out unusable rows (and count them) instead of stopping.")
    ] = False,
    encoding: Annotated[
        str, typer.Option("--encoding", help="Text encoding of the file, e.g. latin-1 or cp1252 (default UTF-8).")
    ] = "utf-8-sig",
    drop_duplicates: Annotated[
        bool, typer.Option("--drop-duplicates", help="Leave out rows identical in customer, date and amount "
                                                     "(by default they are kept and counted).")
    ] = False,
    earliest_date: Annotated[
        str, typer.Option("--earliest-date", help="Purchases dated before this day (YYYY-MM-DD) are taken for "
                                                  "placeholders of a missing date (1900-01-01, 1970-01-01) and "
                                                  "refused, or left out with --skip-bad-rows.", callback=a_day)
    ] = "1990-01-01",
    replace: ReplaceOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Ingest a transactions export (one row per purchase) as a non-contractual workspace.

    Customers are inferred from their first purchase; churn is then 'no purchase within
    the horizon'. A workspace holds one business: one that already holds data is refused
    unless --replace, which starts it over only if the whole ingest succeeds.
    Compressed files (.gz, .bz2, .xz, .zip) are read as they are; times with UTC offsets are
    converted to UTC; day/month order is read from the file itself, or from --date-format.
    Dates before --earliest-date (1990-01-01) are taken for placeholders of a missing date.

    Examples:

      clm ingest transactions orders.csv --customer-col customer --date-col date --amount-col total

      clm ingest transactions export.txt --sep ';' --decimal ',' --date-format '%d.%m.%Y' \\
          --customer-col Kunde --date-col Datum --amount-col Betrag -w shop
    """
    from pipelines.cli import render
    from pipelines.ingest import TransactionsSource
    from pipelines.ingest import ingest_transactions as ingest_job

    if decimal not in (".", ","):
        raise ClmError(f"--decimal must be '.' or ',' (got '{decimal}').")
    ws = Workspace.at(workspace)
    src = TransactionsSource(file, customer_col, date_col, amount_col, date_format, sep, decimal, skip_bad_rows,
                             encoding, drop_duplicates, parse_day(earliest_date, "--earliest-date"))
    with ws.exclusive("clm ingest transactions"), console.status(Text(f"Reading {file}")):
        summary = ingest_job(src, ws, replace)
    render.ingested(summary, ws.raw_dir)


@user_errors
def validate(workspace: WorkspaceOpt = None) -> None:
    """Check every raw table of the workspace against its data contract.

    Reports each violation with its table, column, number of rows and examples:
    duplicated keys, nulls in keys, negative amounts, unparseable dates, timestamps after
    the data's end, events for unknown customers, events before signup, and more.
    Exits 3 if the data is invalid. Valid data is recorded as such (raw/_validated.json),
    so that later commands check it again only once a raw file changes.

    Example:  clm validate -w shop
    """
    from pipelines.cli import render
    from pipelines.jobs.validate import validate as validate_job

    render.show(validate_job(Workspace.at(workspace), RichReporter()))
