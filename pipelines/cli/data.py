"""Data commands: `clm simulate`, `clm ingest`, `clm validate`."""
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
    user_errors,
)

if TYPE_CHECKING:
    from pipelines.ingest import ExportSource, ReadOptions
    from simulator.engine import SimulationConfig

# The jobs are imported inside each command (here and in every command module): `clm
# --help` and a refused option answer at once, without loading pandas, Feast or MLflow.



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


def _pairs(values: list[str], option: str, example: str) -> list[tuple[str, str]]:
    """NAME=VALUE options as pairs; a malformed one is named with an example."""
    pairs = []
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ClmError(f"{option} '{text}' is not NAME=VALUE; e.g. {option} {example}.")
        pairs.append((name.strip(), value.strip()))
    return pairs


def export_source(table: str, file: Path, columns: dict[str, str | None], cols: list[str], maps: list[str],
                  attributes: str | None, control_value: str | None, randomised: bool,
                  options: ReadOptions, targeted: bool = False) -> ExportSource:
    """The export the options describe, checked before any file is read."""
    from pipelines.ingest import TABLES, ExportSource

    if table not in TABLES:
        raise ClmError(f"'{table}' is not a table clm ingests; choose one of: {', '.join(TABLES)}.")
    spec = TABLES[table]
    named = {k: v for k, v in columns.items() if v is not None}
    if "amount" in named and table != "transactions":
        raise ClmError(f"--amount-col is for transactions; for {table}, name columns with --col FIELD=COLUMN.")
    named = {spec.time_field if k == "event_time" else k: v for k, v in named.items()}
    named.update(_pairs(cols, "--col", "plan=Tier"))
    values: dict[str, dict[str, str]] = {}
    for target, value in _pairs(maps, "--map", "event:Cancelled=cancel"):
        field, colon, word = target.partition(":")
        if not colon or not field or not word:
            raise ClmError(f"--map '{target}={value}' is not FIELD:WORD=VALUE; e.g. --map event:Cancelled=cancel.")
        values.setdefault(field, {})[word] = value
    listed = tuple(a.strip() for a in attributes.split(",") if a.strip()) if attributes else ()
    return ExportSource(table, file, named, options, values, listed, control_value, randomised, targeted)


@user_errors
def ingest(
    ctx: typer.Context,
    table: Annotated[str | None, typer.Argument(help="customers, subscriptions, transactions, usage, tickets, nps, "
                                                     "referrals, consents, campaigns or attribute_history.",
                                                show_default=False)] = None,
    file: Annotated[Path | None, typer.Argument(help="CSV (or other delimited text, compressed or not) or Parquet "
                                                     "file.", show_default=False)] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="A YAML file naming each table's file and "
                                                                   "columns (see README).")] = None,
    fields: Annotated[bool, typer.Option("--fields", help="List every table's fields (what each holds, which are "
                                                          "required) and exit; with a TABLE, that table's.")] = False,
    customer_col: Annotated[str | None, typer.Option("--customer-col", help="Column holding the customer id.")] = None,
    date_col: Annotated[str | None, typer.Option("--date-col", help="Column holding the table's date or time "
                                                                    "(signup for customers).")] = None,
    amount_col: Annotated[str | None, typer.Option("--amount-col", help="Column holding the amount paid "
                                                                        "(transactions).")] = None,
    col: Annotated[list[str] | None, typer.Option("--col", help="FIELD=COLUMN: the file's column for a field, e.g. "
                                                                "--col plan=Tier (repeat it).")] = None,
    map_values: Annotated[list[str] | None, typer.Option("--map", help="FIELD:WORD=VALUE: the file's word for a "
                                                                       "value, e.g. --map event:Cancelled=cancel.")] = None,
    attributes: Annotated[str | None, typer.Option("--attributes", help="customers: the business's own columns to "
                                                                        "learn from, known at signup (static), e.g. "
                                                                        "segment_b,V1,V2; attribute_history: the "
                                                                        "columns that change, e.g. tier,score.")] = None,
    control_value: Annotated[str | None, typer.Option("--control-value", help="campaigns: the action column's value "
                                                                              "of the control group, e.g. No.")] = None,
    randomised: Annotated[bool, typer.Option("--randomised", help="campaigns: customers were assigned at random; "
                                                                  "each arm's share is its probability.")] = False,
    targeted: Annotated[bool, typer.Option("--targeted", help="campaigns: customers were chosen by a rule whose "
                                                              "probabilities are unknown; training estimates them "
                                                              "from the customers' features and leaves out an action "
                                                              "given almost without chance.")] = False,
    date_format: Annotated[
        str | None, typer.Option("--date-format", help="strptime format, e.g. '%d/%m/%Y'; inferred if omitted.")
    ] = None,
    sep: Annotated[
        str | None, typer.Option("--sep", help="Separator: ',', ';', 'tab' or 'whitespace'; detected if omitted.")
    ] = None,
    decimal: Annotated[str, typer.Option("--decimal", help="Decimal mark of numbers: '.' or ','.")] = ".",
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Leave out unusable rows (and count them) instead of stopping.")
    ] = False,
    encoding: Annotated[
        str, typer.Option("--encoding", help="Text encoding of the file, e.g. latin-1 or cp1252 (default UTF-8).")
    ] = "utf-8-sig",
    drop_duplicates: Annotated[
        bool, typer.Option("--drop-duplicates", help="Leave out rows identical in every column read "
                                                     "(by default they are kept and counted).")
    ] = False,
    earliest_date: Annotated[
        str, typer.Option("--earliest-date", help="Dates before this day (YYYY-MM-DD) are taken for placeholders of "
                                                  "a missing date (1900-01-01, 1970-01-01) and refused, or left out "
                                                  "with --skip-bad-rows.", callback=a_day)
    ] = "1990-01-01",
    until: Annotated[
        str | None, typer.Option("--until", help="The last day the exports cover (YYYY-MM-DD, the day they were "
                                                 "taken), when later than their last row: the data's end. "
                                                 "A mapping file says it with `until:`.",
                                 callback=a_day)
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the table(s) the workspace holds already (only "
                                                            "them); a workspace holding a simulation is started "
                                                            "over.")] = False,
    pseudonymise: Annotated[bool, typer.Option("--pseudonymise", help="Replace each customer id by a keyed hash "
                                                                      "(key: the CLM_PRIVACY_KEY environment variable, "
                                                                      "kept outside the workspace), so that names or "
                                                                      "e-mail addresses used as ids never enter it.")] = False,
    allow_personal: Annotated[list[str] | None, typer.Option("--allow-personal", help="A column kept although it holds "
                                                                                     "e-mail addresses or phone numbers "
                                                                                     "(refused otherwise); repeatable.",
                                                             show_default=False)] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Ingest a business's exports: one table's file, or every table through --mapping.

    Tables: customers, subscriptions, transactions, usage, tickets, nps, referrals,
    consents, campaigns (the business's own actions and control groups: what the uplift models
    learn from), attribute_history (the business's own attributes that change: a tier, a
    score; each row's values hold from its time on). A workspace may hold any of them; each call adds tables (one it holds
    already needs --replace). Without customers, the customers are inferred from their
    first event; without subscriptions the business is non-contractual (churn = no
    purchase within the horizon). Each field's column is the one you name, else one of
    the field's own name. Compressed files (.gz, .bz2, .xz, .zip) are read as they are;
    times with UTC offsets are converted to UTC; day/month order is read from the file.

    Examples:

      clm ingest transactions orders.csv --customer-col customer --date-col date --amount-col total

      clm ingest customers crm.csv --customer-col Id --date-col Created --col segment=Tier \\
          --col consent_email=Newsletter --attributes V1,V2 -w shop

      clm ingest subscriptions plans.csv --customer-col Id --date-col When --col event=Status \\
          --map event:Cancelled=cancel --col price='Monthly fee' -w shop

      clm ingest campaigns promo.csv --customer-col Id --date-col Sent --col action=Offer \\
          --control-value 'No offer' --randomised -w shop

      clm ingest campaigns mailing.csv --customer-col Id --date-col Sent --col action=Mailing \\
          --control-value 'not mailed' --targeted -w shop

      clm ingest attribute_history tiers.csv --customer-col Id --date-col Changed --attributes tier,score -w shop

      clm ingest --mapping crm.yaml -w shop

      clm ingest --fields            # every table's fields; `clm ingest tickets --fields` for one
    """
    from pipelines.cli import render
    from pipelines.ingest import ReadOptions, ingest_tables
    from pipelines.ingest.mapping import Reading, read_mapping

    if fields:
        from pipelines.ingest import TABLES

        if table is not None and table not in TABLES:
            raise ClmError(f"'{table}' is not a table clm ingests; choose one of: {', '.join(TABLES)}.")
        render.table_fields([TABLES[table]] if table else list(TABLES.values()))
        return
    if mapping is None and table is None and file is None:  # bare `clm ingest`: the help, and success
        console.print(ctx.get_help())
        raise typer.Exit()
    if decimal not in (".", ","):
        raise ClmError(f"--decimal must be '.' or ',' (got '{decimal}').")
    if mapping is None and (table is None or file is None):
        raise ClmError("Name a table and its file (e.g. `clm ingest transactions orders.csv --customer-col customer "
                       "--date-col date --amount-col total`), or every table with --mapping crm.yaml. See "
                       "`clm ingest --help`.")
    until_from = "--until"
    options = ReadOptions(date_format, sep, decimal, skip_bad_rows, encoding, drop_duplicates,
                          parse_day(earliest_date, "--earliest-date"))
    if mapping is not None:
        if table is not None or file is not None:
            raise ClmError("Give either --mapping or a table and its file, not both.")
        one_file = {"--customer-col": customer_col, "--date-col": date_col, "--amount-col": amount_col, "--col": col,
                    "--map": map_values, "--attributes": attributes, "--control-value": control_value,
                    "--randomised": randomised or None, "--targeted": targeted or None}
        given_too = [option for option, value in one_file.items() if value]
        if given_too:
            raise ClmError(f"{', '.join(given_too)} {'describes' if len(given_too) == 1 else 'describe'} one table's "
                           "file; with --mapping, say it in the mapping file (its `columns`, `values`, `attributes`, "
                           "`control_value`, `randomised`, `targeted`). Read options (--sep, --date-format, ...) may be "
                           "given here for every file.")
        given = Reading(date_format=date_format, sep=sep, decimal=None if decimal == "." else decimal,
                        encoding=None if encoding == "utf-8-sig" else encoding, skip_bad_rows=skip_bad_rows or None,
                        drop_duplicates=drop_duplicates or None,
                        earliest_date=None if earliest_date == "1990-01-01" else earliest_date)
        mapped = read_mapping(mapping, given)
        sources = mapped.sources
        if until is None and mapped.until is not None:
            until, until_from = f"{mapped.until:%Y-%m-%d}", f"until: in {mapping}"
    else:
        assert table is not None and file is not None
        columns = {"customer_id": customer_col, "event_time": date_col, "amount": amount_col}
        sources = [export_source(table, file, columns, col or [], map_values or [], attributes, control_value,
                                 randomised, options, targeted)]
    ws = Workspace.at(workspace)
    with ws.exclusive("clm ingest"), console.status(Text("Reading the exports")) as status:
        summaries = ingest_tables(sources, ws, replace, lambda text: status.update(Text(text)),
                                  parse_day(until, "--until") if until is not None else None, until_from,
                                  pseudonymise, allow_personal or [])
    render.ingested(summaries, ws.raw_dir, ws.read_manifest())


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


@user_errors
def forget(
    ids: Annotated[list[str] | None, typer.Argument(help="Customer ids to erase, as the workspace holds them.",
                                                    show_default=False)] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A text file of customer ids, one per line (blank "
                                                             "lines ignored).", show_default=False)] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Erase customers from every place the workspace keeps them (GDPR article 17).

    Removes their rows from the raw tables, the feature snapshots, the online store (SQLite,
    or this workspace's keys in Redis), the decision log and journal, and the batch
    outputs; removes the reports that name them (`clm report` makes them again). The
    erasure is recorded as keyed hashes (WORKSPACE/privacy/erased.json; the key is
    CLM_PRIVACY_KEY, else one made in WORKSPACE/privacy/key), so that a later `clm ingest` of an old export drops them
    and says how many. The API answers 404 for them at once. Models trained with them stay
    until the next `clm retrain`, which no longer sees them. Safe to kill: run it again.

    Examples:  clm forget C0000042 C0000043 -w shop
               clm forget --file erasure-requests.txt -w shop
    """
    from pipelines.cli import render
    from pipelines.jobs.forget import forget as forget_job

    given = list(ids or [])
    if file is not None:
        try:
            given += [line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise ClmError(f"--file {file} cannot be read ({err}): give a UTF-8 text file of ids, one per line.") from None
    ws = Workspace.at(workspace)
    with ws.exclusive("clm forget"):
        render.show(forget_job(ws, given, RichReporter()))
