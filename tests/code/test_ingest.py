"""Ingest of real transaction exports: odd names, separators, formats and bad rows."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clm.contracts import validate_workspace
from clm.domain import Table
from clm.errors import ClmError
from clm.workspace import Workspace
from pipelines.ingest import TransactionsSource, detect_separator, ingest_transactions


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_odd_column_names_and_semicolons_with_decimal_commas(tmp_path):
    path = write(
        tmp_path,
        "export.csv",
        "Kunden Nr.;Datum (Tag);Betrag €\n"
        "K-1;03.01.2024;12,50\n"
        "K-2;04.01.2024;1.200,00\n"
        "K-1;20.02.2024;7,25\n",
    )
    ws = Workspace(tmp_path / "ws")
    src = TransactionsSource(path, "Kunden Nr.", "Datum (Tag)", "Betrag €", date_format="%d.%m.%Y", decimal=",")
    summary = ingest_transactions(src, ws)
    assert summary.separator == ";" and summary.rows_written == 3 and summary.customers == 2

    tx = ws.read_table(Table.TRANSACTIONS)
    assert tx.amount.tolist() == [12.5, 1200.0, 7.25]
    assert tx.event_time.tolist() == [
        pd.Timestamp("2024-01-03", tz="UTC"), pd.Timestamp("2024-01-04", tz="UTC"), pd.Timestamp("2024-02-20", tz="UTC"),
    ]
    customers = ws.read_table(Table.CUSTOMERS).set_index("customer_id")
    # Signup is the first purchase.
    assert customers.signup_time.to_dict() == {
        "K-1": pd.Timestamp("2024-01-03", tz="UTC"), "K-2": pd.Timestamp("2024-01-04", tz="UTC"),
    }
    manifest = ws.read_manifest()
    assert manifest.business == "non_contractual" and manifest.tables == ["customers", "transactions"]
    assert manifest.end == pd.Timestamp("2024-02-21", tz="UTC")  # exclusive: the day after the last event
    assert validate_workspace(ws).ok


def test_whitespace_separated_text(tmp_path):
    path = write(tmp_path, "t.txt", "cust   when        paid\nA  2024-03-01  10\nB      2024-03-02   5.5\nA 2024-03-09 1\n")
    ws = Workspace(tmp_path / "ws")
    summary = ingest_transactions(TransactionsSource(path, "cust", "when", "paid"), ws)
    assert summary.separator == r"\s+"
    assert ws.read_table(Table.TRANSACTIONS).groupby("customer_id").amount.sum().to_dict() == {"A": 11.0, "B": 5.5}


def test_tab_separator_given_explicitly(tmp_path):
    path = write(tmp_path, "t.tsv", "id\tday\tvalue\nx\t2024-01-05T10:30:00+02:00\t3\n")
    ws = Workspace(tmp_path / "ws")
    ingest_transactions(TransactionsSource(path, "id", "day", "value", sep="tab"), ws)
    # A timezone in the data is honoured: 10:30 at +02:00 is 08:30 UTC.
    assert ws.read_table(Table.TRANSACTIONS).event_time.iloc[0] == pd.Timestamp("2024-01-05 08:30", tz="UTC")


def test_parquet_input(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({
        "Customer": ["a", "b", "a"],
        "OrderDate": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-10"]),
        "Total": [1.0, 2.0, 3.0],
    }).to_parquet(path)
    ws = Workspace(tmp_path / "ws")
    summary = ingest_transactions(TransactionsSource(path, "Customer", "OrderDate", "Total"), ws)
    assert (summary.customers, summary.rows_written) == (2, 3)
    assert validate_workspace(ws).ok


BAD = (
    "customer,date,amount\n"
    "a,2024-01-01,10\n"
    ",2024-01-02,5\n"  # row 3: no customer
    "b,yesterday,5\n"  # row 4: date does not parse
    "c,2024-01-03,ten\n"  # row 5: not a number
    "d,2024-01-04,-3\n"  # row 6: negative
    "e,2024-01-05,4\n"
)


def test_bad_rows_stop_the_ingest_with_a_report(tmp_path):
    path = write(tmp_path, "bad.csv", BAD)
    with pytest.raises(ClmError) as err:
        ingest_transactions(TransactionsSource(path, "customer", "date", "amount"), Workspace(tmp_path / "ws"))
    text = str(err.value)
    assert "empty customer id in column 'customer': 1 row(s); e.g. row 3" in text
    assert "date that does not parse in column 'date': 1 row(s); e.g. row 4: 'yesterday'" in text
    assert "amount that is not a number in column 'amount' (decimal mark '.'): 1 row(s); e.g. row 5: 'ten'" in text
    assert "negative amount in column 'amount': 1 row(s); e.g. row 6: '-3'" in text
    assert "--skip-bad-rows" in text
    assert not (tmp_path / "ws" / "raw").exists()


def test_skip_bad_rows_keeps_the_good_ones(tmp_path):
    path = write(tmp_path, "bad.csv", BAD)
    ws = Workspace(tmp_path / "ws")
    summary = ingest_transactions(TransactionsSource(path, "customer", "date", "amount", skip_bad_rows=True), ws)
    assert summary.rows_read == 6 and summary.rows_written == 2
    assert sum(summary.skipped.values()) == 4
    assert sorted(ws.read_table(Table.CUSTOMERS).customer_id) == ["a", "e"]


def test_failed_ingest_leaves_previous_data_untouched(tmp_path):
    ws = Workspace(tmp_path / "ws")
    good = write(tmp_path, "good.csv", "c,d,a\nx,2024-01-01,1\n")
    ingest_transactions(TransactionsSource(good, "c", "d", "a"), ws)
    before = {p.name: p.read_bytes() for p in ws.raw_dir.iterdir()}
    bad = write(tmp_path, "bad.csv", BAD)
    with pytest.raises(ClmError):
        ingest_transactions(TransactionsSource(bad, "customer", "date", "amount"), ws)
    assert {p.name: p.read_bytes() for p in ws.raw_dir.iterdir()} == before
    assert sorted(p.name for p in ws.root.iterdir()) == [".clm-workspace", "raw"]  # no staging folder left behind


def test_missing_column_names_the_columns_there_are(tmp_path):
    path = write(tmp_path, "t.csv", "who,when,how much\nx,2024-01-01,1\n")
    with pytest.raises(ClmError) as err:
        ingest_transactions(TransactionsSource(path, "customer", "when", "how much"), Workspace(tmp_path / "ws"))
    assert "(transactions): column 'customer' (field customer_id: the customer's id" in str(err.value)
    assert "not found" in str(err.value) and "'who', 'when', 'how much'" in str(err.value)


def test_wrong_date_format_is_reported_per_row(tmp_path):
    path = write(tmp_path, "t.csv", "c,d,a\nx,2024-01-31,1\n")
    with pytest.raises(ClmError) as err:
        ingest_transactions(TransactionsSource(path, "c", "d", "a", date_format="%d/%m/%Y"), Workspace(tmp_path / "ws"))
    assert "with format '%d/%m/%Y'" in str(err.value)


@pytest.mark.parametrize(
    "sample,expected",
    [("a,b,c\n1,2,3\n", ","), ("a;b;c\n1;2;3\n", ";"), ("a\tb\tc\n1\t2\t3\n", "\t"), ("a  b c\n1 2   3\n", r"\s+")],
)
def test_separator_detection(sample, expected):
    assert detect_separator(sample) == expected


def test_undetectable_separator_asks_for_sep():
    with pytest.raises(ClmError, match="--sep"):
        detect_separator("just-one-column\nvalue\nvalue value value\n")


# ------------------------------------------------------------------ real files, real mistakes
def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize("date_format", [None, "%Y-%m-%dT%H:%M:%S%z"])
def test_utc_offsets_that_change_within_a_file_ingest(tmp_path, date_format):
    # Summer and winter time in one export: 10:00 at +01:00 is 09:00 UTC, at +02:00 08:00 UTC.
    path = write(tmp_path, "o.csv", "c,d,a\nA,2024-03-30T10:00:00+01:00,5\nA,2024-04-01T10:00:00+02:00,6\n")
    ws = Workspace(tmp_path / "ws")
    ingest_transactions(TransactionsSource(path, "c", "d", "a", date_format=date_format), ws)
    assert ws.read_table(Table.TRANSACTIONS).event_time.tolist() == [utc("2024-03-30 09:00"), utc("2024-04-01 08:00")]


def test_a_folder_is_not_an_export(tmp_path):
    with pytest.raises(ClmError, match="is a folder"):
        ingest_transactions(TransactionsSource(tmp_path, "c", "d", "a"), Workspace(tmp_path / "ws"))


def test_latin1_files_need_their_encoding_named(tmp_path):
    path = tmp_path / "o.csv"
    path.write_bytes("kunde,datum,betrag\nMüller,2024-01-05,3\n".encode("latin-1"))
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(ClmError, match="--encoding latin-1"):
        ingest_transactions(TransactionsSource(path, "kunde", "datum", "betrag"), ws)
    assert not ws.has_raw()
    ingest_transactions(TransactionsSource(path, "kunde", "datum", "betrag", encoding="latin-1"), ws)
    assert ws.read_table(Table.TRANSACTIONS).customer_id.tolist() == ["Müller"]


def test_compressed_csv_is_read_as_users_expect(tmp_path):
    import gzip

    path = tmp_path / "o.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("c;d;a\nA;2024-01-05;3\nB;2024-01-06;4\n")
    summary = ingest_transactions(TransactionsSource(path, "c", "d", "a"), Workspace(tmp_path / "ws"))
    assert summary.separator == ";" and summary.rows_written == 2


def test_ambiguous_day_month_dates_are_refused_not_guessed(tmp_path):
    path = write(tmp_path, "o.csv", "c,d,a\nA,01/02/2024,3\nB,03/04/2024,4\n")
    with pytest.raises(ClmError, match=r"column 'd' are ambiguous.*--date-format"):
        ingest_transactions(TransactionsSource(path, "c", "d", "a"), Workspace(tmp_path / "ws"))
    # One date with a first field above 12 shows the file is day/month: every row reads so.
    path = write(tmp_path, "p.csv", "c,d,a\nA,01/02/2024,3\nB,13/04/2024,4\nC,03/04/2024,5\n")
    ws = Workspace(tmp_path / "ws")
    ingest_transactions(TransactionsSource(path, "c", "d", "a"), ws)
    got = ws.read_table(Table.TRANSACTIONS).set_index("customer_id").event_time.to_dict()
    assert got == {"A": utc("2024-02-01"), "C": utc("2024-04-03"), "B": utc("2024-04-13")}


@pytest.mark.parametrize("amount", ["inf", "1e308"])
def test_infinite_or_absurd_amounts_are_refused(tmp_path, amount):
    path = write(tmp_path, "o.csv", f"c,d,a\nA,2024-01-05,3\nB,2024-01-06,{amount}\n")
    with pytest.raises(ClmError, match=r"infinite or implausibly large .* column 'a'.*row 3"):
        ingest_transactions(TransactionsSource(path, "c", "d", "a"), Workspace(tmp_path / "ws"))


def test_the_contract_refuses_an_infinite_amount(workspace_copy):
    tx = workspace_copy.read_table(Table.TRANSACTIONS)
    tx.loc[0, "amount"] = float("inf")
    tx.to_parquet(workspace_copy.table_path(Table.TRANSACTIONS), index=False)
    report = validate_workspace(workspace_copy)
    assert not report.ok and "transactions.amount: infinite or implausibly large" in report.text()


def test_dates_in_the_future_are_refused(tmp_path):
    later = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=400)).strftime("%Y-%m-%d")
    path = write(tmp_path, "o.csv", f"c,d,a\nA,2024-01-05,3\nB,{later},4\n")
    with pytest.raises(ClmError, match=rf"date after today .* column 'd'.*'{later}'"):
        ingest_transactions(TransactionsSource(path, "c", "d", "a"), Workspace(tmp_path / "ws"))


def test_exact_duplicates_are_counted_and_dropped_on_request(tmp_path):
    path = write(tmp_path, "o.csv", "c,d,a\nA,2024-01-05,3\nA,2024-01-05,3\nA,2024-01-05,4\nB,2024-01-06,4\n")
    kept = ingest_transactions(TransactionsSource(path, "c", "d", "a"), Workspace(tmp_path / "kept"))
    assert kept.duplicates == 1 and kept.rows_written == 4
    dropped = ingest_transactions(TransactionsSource(path, "c", "d", "a", drop_duplicates=True), Workspace(tmp_path / "d"))
    assert dropped.duplicates == 1 and dropped.rows_written == 3
