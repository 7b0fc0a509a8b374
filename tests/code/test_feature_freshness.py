"""Incremental snapshot builds (`features.freshness`): after a new export only the snapshots
whose earlier raw rows changed are made again, and what a build leaves equals a build from
nothing, also after a build killed midway."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import features.build
from clm.domain import Table
from clm.workspace import Workspace
from features.build import build_features, snapshot_dates
from features.freshness import BuildState, date_fingerprints
from features.snapshots import features_dir, read_snapshot, snapshot_path, workspace_groups


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def stamps(ws: Workspace) -> dict[Path, int]:
    """Each snapshot file's inode and time: the same only if the file was not written again."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in features_dir(ws).glob("*/*.parquet")}


def built_from_nothing(ws: Workspace, tmp_path: Path) -> Workspace:
    """The same raw data in a workspace of its own, every snapshot built from nothing."""
    fresh = Workspace(tmp_path / "fresh")
    shutil.copytree(ws.raw_dir, fresh.raw_dir)
    build_features(fresh)
    return fresh


def assert_same_snapshots(ws: Workspace, other: Workspace) -> None:
    dates = snapshot_dates(ws.read_manifest())
    for group in workspace_groups(ws):
        for d in dates:
            pd.testing.assert_frame_equal(read_snapshot(ws, group.name, d), read_snapshot(other, group.name, d),
                                          check_exact=True, obj=f"{group.name} at {d:%Y-%m-%d}")


def change_one_purchase(ws: Workspace, after: pd.Timestamp, before: pd.Timestamp) -> None:
    """Raise the amount of one paid purchase made in [after, before); write every raw table
    again (a new export of the same rows otherwise)."""
    frame = ws.read_table(Table.TRANSACTIONS)
    inside = frame.index[(frame.event_time >= after) & (frame.event_time < before) & (frame.status == "paid")]
    frame.loc[inside[0], "amount"] += 500.0
    frame.to_parquet(ws.table_path(Table.TRANSACTIONS), index=False)
    for table in (Table.CUSTOMERS, Table.USAGE, Table.TICKETS):
        ws.read_table(table).to_parquet(ws.table_path(table), index=False)


def test_a_new_export_makes_again_only_the_snapshots_whose_rows_changed(workspace_copy, tmp_path):
    ws = workspace_copy
    assert [f"{d:%Y-%m-%d}" for d in snapshot_dates(ws.read_manifest())] == [
        "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01"]
    build_features(ws)
    before = stamps(ws)
    april = read_snapshot(ws, "rfm", day("2024-04-01"))

    change_one_purchase(ws, day("2024-03-01"), day("2024-04-01"))  # seen from the April snapshot on
    result = build_features(ws)

    assert [f"{d:%Y-%m-%d}" for d in result.built_dates] == ["2024-04-01", "2024-05-01"] and result.stale == 2
    after = stamps(ws)
    kept = {p for p in before if after[p] == before[p]}
    assert kept == {p for p in before if p.name < "2024-04-01"}
    assert_same_snapshots(ws, built_from_nothing(ws, tmp_path))
    rfm = read_snapshot(ws, "rfm", day("2024-04-01"))
    assert rfm.monetary_365d.sum() == pytest.approx(april.monetary_365d.sum() + 500.0)  # the change shows


def test_the_same_rows_brought_again_make_nothing_again(workspace_copy):
    ws = workspace_copy
    build_features(ws)
    before = stamps(ws)
    for table in (Table.CUSTOMERS, Table.TRANSACTIONS, Table.USAGE):
        frame = ws.read_table(table)
        frame.sample(frac=1.0, random_state=3).to_parquet(ws.table_path(table), index=False)  # another row order
    result = build_features(ws)
    assert result.built_dates == [] and result.stale == 0 and stamps(ws) == before


def test_a_changed_feature_definition_makes_every_snapshot_again(workspace_copy, monkeypatch):
    ws = workspace_copy
    build_features(ws)
    before = stamps(ws)
    monkeypatch.setattr(features.build, "definitions_fingerprint", lambda workspace: "another definition")
    result = build_features(ws)
    assert len(result.built_dates) == 4 and all(stamps(ws)[p] != before[p] for p in before)


def test_a_build_killed_midway_then_run_again_equals_a_build_from_nothing(workspace_copy, tmp_path, monkeypatch):
    ws = workspace_copy
    build_features(ws)
    change_one_purchase(ws, day("2024-02-01"), day("2024-03-01"))  # March to May are stale
    calls = {"n": 0}
    compute = features.build.compute_group

    def killed_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return compute(*args, **kwargs)

    monkeypatch.setattr(features.build, "compute_group", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_features(ws)
    monkeypatch.setattr(features.build, "compute_group", compute)
    assert not snapshot_path(ws, "voice", day("2024-04-01")).exists()  # the kill left the job half done
    result = build_features(ws)
    assert [f"{d:%Y-%m-%d}" for d in result.built_dates] == ["2024-03-01", "2024-04-01", "2024-05-01"]
    assert_same_snapshots(ws, built_from_nothing(ws, tmp_path))


def test_a_dates_fingerprint_reads_only_rows_before_it(workspace_copy):
    ws = workspace_copy
    march, april = day("2024-03-01"), day("2024-04-01")
    first = date_fingerprints(ws, [march, april])
    assert date_fingerprints(ws, [april]) == {"2024-04-01": first["2024-04-01"]}  # whatever else is asked

    frame = ws.read_table(Table.USAGE)
    extra = frame.head(1).assign(event_time=march)  # at March's instant: not before it
    pd.concat([frame, extra], ignore_index=True).to_parquet(ws.table_path(Table.USAGE), index=False)
    second = date_fingerprints(ws, [march, april])
    assert second["2024-03-01"] == first["2024-03-01"] and second["2024-04-01"] != first["2024-04-01"]

    customers = ws.read_table(Table.CUSTOMERS)
    early = customers.index[customers.signup_time < march][0]
    customers.loc[early, "region"] = customers.loc[early, "region"] + " (moved)"
    customers.to_parquet(ws.table_path(Table.CUSTOMERS), index=False)
    third = date_fingerprints(ws, [march, april])
    assert third["2024-03-01"] != second["2024-03-01"] and third["2024-04-01"] != second["2024-04-01"]


def test_the_state_records_every_date_built(workspace_copy):
    ws = workspace_copy
    build_features(ws, [day("2024-03-01")])
    build_features(ws, [day("2024-04-01")])
    assert sorted(BuildState.read(ws).dates) == ["2024-03-01", "2024-04-01"]
    ws.read_table(Table.USAGE).to_parquet(ws.table_path(Table.USAGE), index=False)  # same rows, a new file
    assert build_features(ws, [day("2024-03-01")]).built_dates == []
