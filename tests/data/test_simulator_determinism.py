"""Same arguments, byte-identical files; another seed, other data."""
from __future__ import annotations

from pathlib import Path

from clm.domain import Table
from simulator.tables import SIMULATED_TABLES
from tests.conftest import simulate


def _bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "raw").glob("*.parquet"))}


def test_same_arguments_give_byte_identical_files(tmp_path: Path):
    a = simulate(tmp_path / "a", 400, 5, "2024-01-01", "2024-06-30")
    b = simulate(tmp_path / "b", 400, 5, "2024-01-01", "2024-06-30")
    files_a, files_b = _bytes(a.root), _bytes(b.root)
    assert set(files_a) == {f"{t.value}.parquet" for t in SIMULATED_TABLES}
    assert files_a == files_b


def test_another_seed_gives_other_data(tmp_path: Path):
    a = simulate(tmp_path / "a", 400, 5, "2024-01-01", "2024-06-30")
    c = simulate(tmp_path / "c", 400, 6, "2024-01-01", "2024-06-30")
    assert _bytes(a.root)["usage.parquet"] != _bytes(c.root)["usage.parquet"]
    assert a.read_table(Table.GROUND_TRUTH).p_churn_90d.mean() != c.read_table(Table.GROUND_TRUTH).p_churn_90d.mean()


def test_simulated_workspace_is_valid_and_complete(small_workspace):
    from clm.contracts import validate_workspace

    report = validate_workspace(small_workspace)
    assert report.ok, report.text()
    manifest = small_workspace.read_manifest()
    assert manifest.business == "contractual"
    customers = small_workspace.read_table(Table.CUSTOMERS)
    assert len(customers) == 300 and customers.customer_id.is_unique
    subs = small_workspace.read_table(Table.SUBSCRIPTIONS)
    # Every customer starts exactly once, at signup.
    starts = subs[subs.event == "start"].set_index("customer_id").event_time
    assert starts.index.is_unique and len(starts) == 300
    assert (starts.sort_index() == customers.set_index("customer_id").signup_time.sort_index()).all()
    # Nobody cancels twice or acts after cancelling.
    cancels = subs[subs.event == "cancel"]
    assert cancels.customer_id.is_unique
    last_event = subs.groupby("customer_id").event_time.max()
    assert (last_event[cancels.customer_id].to_numpy() == cancels.event_time.to_numpy()).all()
