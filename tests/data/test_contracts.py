"""Each kind of bad raw data gets its own clear violation: table, column, rows, examples."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from clm.contracts import Violation, validate_workspace
from clm.domain import Table
from clm.errors import DataContractError
from clm.workspace import Workspace


def corrupt(ws: Workspace, table: Table, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    frame = ws.read_table(table)
    change(frame).to_parquet(ws.table_path(table), index=False)


def only_violation(ws: Workspace) -> Violation:
    report = validate_workspace(ws)
    assert len(report.violations) == 1, report.text()
    return report.violations[0]


def test_clean_workspace_passes(workspace_copy):
    report = validate_workspace(workspace_copy)
    assert report.ok, report.text()
    assert report.rows["customers"] == 300


def test_duplicated_keys(workspace_copy):
    def dup(df: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([df, df.iloc[[3, 7]]], ignore_index=True)

    corrupt(workspace_copy, Table.TRANSACTIONS, dup)
    v = only_violation(workspace_copy)
    assert (v.table, v.column, v.rows) == ("transactions", "transaction_id", 2)
    assert "duplicated key" in v.problem


def test_null_keys(workspace_copy):
    def null_ids(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[[0, 1, 2], "customer_id"] = None
        return df

    corrupt(workspace_copy, Table.USAGE, null_ids)
    v = only_violation(workspace_copy)
    assert (v.table, v.column, v.rows) == ("usage", "customer_id", 3)
    assert "null" in v.problem


def test_negative_amounts(workspace_copy):
    def negative(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[[5, 6], "amount"] = [-10.0, -0.5]
        return df

    corrupt(workspace_copy, Table.TRANSACTIONS, negative)
    v = only_violation(workspace_copy)
    assert (v.table, v.column, v.rows, v.problem) == ("transactions", "amount", 2, "negative amounts")
    assert set(v.examples) == {"-10.0", "-0.5"}


def test_unparseable_dates(workspace_copy):
    def as_text(df: pd.DataFrame) -> pd.DataFrame:
        df["event_time"] = df["event_time"].astype(str)
        df.loc[[0, 4], "event_time"] = ["not a date", "2024-13-45"]
        return df

    corrupt(workspace_copy, Table.NPS, as_text)
    report = validate_workspace(workspace_copy)
    problems = {(v.table, v.column, v.problem): v for v in report.violations}
    unparseable = problems[("nps", "event_time", "unparseable dates")]
    assert unparseable.rows == 2 and set(unparseable.examples) == {"not a date", "2024-13-45"}
    assert ("nps", "event_time", "not timezone-aware UTC timestamps") in problems


def test_timezone_naive_timestamps(workspace_copy):
    corrupt(workspace_copy, Table.NPS, lambda df: df.assign(event_time=df.event_time.dt.tz_localize(None)))
    v = only_violation(workspace_copy)
    assert (v.table, v.column, v.problem) == ("nps", "event_time", "not timezone-aware UTC timestamps")


def test_timestamps_after_the_data_end(workspace_copy):
    end = workspace_copy.read_manifest().end  # 2024-05-01, exclusive

    def late(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[[0], "event_time"] = end
        df.loc[[1], "event_time"] = end + pd.Timedelta(days=40)
        return df

    corrupt(workspace_copy, Table.NPS, late)
    v = only_violation(workspace_copy)
    assert (v.table, v.column, v.rows) == ("nps", "event_time", 2)
    assert "after the data's end" in v.problem


def test_events_for_unknown_customers(workspace_copy):
    def stranger(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[[0, 1], "customer_id"] = "NOBODY"
        return df

    corrupt(workspace_copy, Table.REFERRALS, stranger)
    v = only_violation(workspace_copy)
    assert (v.table, v.column, v.rows, v.examples) == ("referrals", "customer_id", 1, ("NOBODY",))
    assert "unknown customers" in v.problem


def test_events_before_signup(workspace_copy):
    customers = workspace_copy.read_table(Table.CUSTOMERS).set_index("customer_id").signup_time

    def early(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[0, "event_time"] = customers[df.loc[0, "customer_id"]] - pd.Timedelta(seconds=1)
        return df

    corrupt(workspace_copy, Table.SUBSCRIPTIONS, early)
    v = only_violation(workspace_copy)
    assert (v.table, v.column, v.rows) == ("subscriptions", "event_time", 1)
    assert "before the customer's signup" in v.problem


def test_ticket_resolved_before_opened(workspace_copy):
    def backwards(df: pd.DataFrame) -> pd.DataFrame:
        row = df.resolved_time.notna().idxmax()
        df.loc[row, "resolved_time"] = df.loc[row, "event_time"] - pd.Timedelta(hours=1)
        return df

    corrupt(workspace_copy, Table.TICKETS, backwards)
    v = only_violation(workspace_copy)
    assert (v.table, v.column, v.rows) == ("tickets", "resolved_time", 1)


def test_values_outside_their_domain(workspace_copy):
    corrupt(workspace_copy, Table.SUBSCRIPTIONS, lambda df: df.assign(event=df.event.replace("cancel", "quit")))
    v = only_violation(workspace_copy)
    assert (v.table, v.column) == ("subscriptions", "event") and "not one of" in v.problem
    assert v.examples == ("quit",)


def test_missing_table_and_column(workspace_copy):
    workspace_copy.table_path(Table.NPS).unlink()
    corrupt(workspace_copy, Table.USAGE, lambda df: df.drop(columns=["sessions"]))
    report = validate_workspace(workspace_copy)
    found = {(v.table, v.column, v.problem) for v in report.violations}
    assert found == {("nps", "", "table missing from the workspace"), ("usage", "sessions", "missing column")}


def test_wrong_type_is_named(workspace_copy):
    corrupt(workspace_copy, Table.USAGE, lambda df: df.assign(sessions=df.sessions.astype(str)))
    v = only_violation(workspace_copy)
    assert (v.table, v.column) == ("usage", "sessions") and v.problem.startswith("wrong type")


def test_report_is_one_readable_error(workspace_copy):
    corrupt(workspace_copy, Table.TRANSACTIONS, lambda df: df.assign(amount=-df.amount))
    report = validate_workspace(workspace_copy)
    with pytest.raises(DataContractError) as err:
        report.raise_if_invalid()
    text = str(err.value)
    assert "transactions.amount: negative amounts" in text and "clm validate" in text


def test_data_recorded_valid_is_not_checked_again_until_a_file_changes(workspace_copy):
    """`clm validate` records valid data; commands that read it skip the check while the
    files are as they were, and check again (and refuse) once one changes."""
    from clm.contracts import record_valid, recorded_valid, require_valid

    ws = workspace_copy
    assert not recorded_valid(ws.raw_dir)  # simulated, never validated
    assert validate_workspace(ws).ok
    record_valid(ws.raw_dir)
    assert recorded_valid(ws.raw_dir)
    require_valid(ws)

    corrupt(ws, Table.TRANSACTIONS, lambda df: pd.concat([df, df.iloc[[3]]], ignore_index=True))
    assert not recorded_valid(ws.raw_dir)
    with pytest.raises(DataContractError, match="duplicated key"):
        require_valid(ws)
