"""Benchmark: online materialisation and reads, ours against Feast's own, side by side.

Synthetic snapshot of N customers x 30 float features in 3 feature views (10 each), the
shape measured in ../shared/STACK-NOTES.md. Each phase runs in its own process so its
peak memory (max RSS) is its own:

  ours-sqlite   features.online_store.ClmSqliteOnlineStore.bulk_load, N customers
  ours-redis    features.online_store.ClmRedisOnlineStore.bulk_load, N customers
  feast-sqlite  `feast materialize` into Feast's SQLite store, on a SUBSET of customers
  feast-redis   `feast materialize` into Feast's Redis store, on the same subset

then single-customer `get_online_features` for all 30 features (p50/p99 over --reads
calls, in process) from each store. A redis-server is started on loopback for the run.

    .venv/bin/python benchmarks/online_store.py [--customers 1000000] [--feast-customers 100000]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VIEWS, PER_VIEW = 3, 10
AS_OF = pd.Timestamp("2025-12-01", tz="UTC")
STORE_TYPES = {
    "ours-sqlite": {"type": "features.online_store.ClmSqliteOnlineStore", "path": "{repo}/online.db"},
    "ours-redis": {"type": "features.online_store.ClmRedisOnlineStore", "connection_string": "{redis}"},
    "feast-sqlite": {"type": "sqlite", "path": "{repo}/online.db"},
    "feast-redis": {"type": "redis", "connection_string": "{redis}"},
}


def write_snapshots(folder: Path, customers: int) -> None:
    rng = np.random.default_rng(0)
    ids = pa.array([f"C{i:07d}" for i in range(customers)])
    for v in range(VIEWS):
        cols = {"customer_id": ids, "event_timestamp": pa.array([AS_OF] * customers, pa.timestamp("us", tz="UTC"))}
        for f in range(PER_VIEW):
            values = rng.normal(size=customers)
            values[rng.random(customers) < 0.05] = np.nan
            cols[f"v{v}_f{f}"] = pa.array(values, from_pandas=True)
        (folder / f"view{v}").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), folder / f"view{v}" / "snapshot.parquet", row_group_size=100_000)


def definitions(data: Path) -> list[object]:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource
    from feast.types import Float64
    from feast.value_type import ValueType

    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    views = [
        FeatureView(
            name=f"view{v}", entities=[customer], ttl=timedelta(days=40),
            schema=[Field(name=f"v{v}_f{f}", dtype=Float64) for f in range(PER_VIEW)],
            source=FileSource(name=f"view{v}_src", path=str(data / f"view{v}" / "*.parquet"), timestamp_field="event_timestamp"),
        )
        for v in range(VIEWS)
    ]
    return [customer, *views, FeatureService(name="all_features", features=views)]


def make_repo(repo: Path, kind: str, redis: str) -> None:
    import yaml

    repo.mkdir(parents=True, exist_ok=True)
    online = {k: v.format(repo=repo, redis=redis) for k, v in STORE_TYPES[kind].items()}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump({
        "project": f"bench_{kind.replace('-', '_')}", "provider": "local",
        "registry": {"registry_type": "file", "path": str(repo / "registry.db")},
        "offline_store": {"type": "duckdb"}, "online_store": online, "entity_key_serialization_version": 3,
    }))


def child_load(kind: str, repo: Path, data: Path) -> dict[str, float]:
    """Apply, then load the snapshot; prints seconds and peak memory of the load."""
    import warnings

    from feast import FeatureStore

    warnings.simplefilter("ignore")
    store = FeatureStore(repo_path=str(repo))
    store.apply(definitions(data))
    customers = pq.ParquetFile(data / "view0" / "snapshot.parquet").metadata.num_rows
    start = time.perf_counter()
    if kind.startswith("ours"):
        from features.online_store import (
            ClmRedisOnlineStore,
            ClmSqliteOnlineStore,
            ViewSnapshot,
        )

        cls = ClmSqliteOnlineStore if kind == "ours-sqlite" else ClmRedisOnlineStore
        snaps = [
            ViewSnapshot(v, pq.ParquetFile(data / v.name / "snapshot.parquet").iter_batches(
                batch_size=100_000, columns=["customer_id", *[f.name for f in v.features]]))
            for v in store.list_feature_views()
        ]
        cls().bulk_load(store.config, snaps, AS_OF.to_pydatetime())
    else:
        subprocess.run(
            ["feast", "materialize", (AS_OF - pd.Timedelta(days=1)).isoformat(), (AS_OF + pd.Timedelta(seconds=1)).isoformat()],
            cwd=repo, check=True, capture_output=True, env=_env(),
        )
    seconds = time.perf_counter() - start
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"seconds": seconds, "customers": customers, "peak_gb": peak / 1024**2}


def child_read(repo: Path, reads: int, customers: int) -> dict[str, float]:
    import warnings

    from feast import FeatureStore

    warnings.simplefilter("ignore")
    store = FeatureStore(repo_path=str(repo))
    service = store.get_feature_service("all_features")
    rng = np.random.default_rng(1)
    ids = [f"C{i:07d}" for i in rng.integers(0, customers, reads + 50)]
    times = []
    for i, cid in enumerate(ids):
        t0 = time.perf_counter()
        out = store.get_online_features(features=service, entity_rows=[{"customer_id": cid}]).to_dict()
        if i >= 50:  # warm-up
            times.append(time.perf_counter() - t0)
    assert len(out) == 1 + VIEWS * PER_VIEW
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_child(*args: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_redis() -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--feast-customers", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, kind, repo, data = args.child[:4]
        result = child_load(kind, Path(repo), Path(data)) if what == "load" else child_read(Path(repo), args.reads, int(data))
        print(json.dumps(result))
        return

    redis_proc, redis = start_redis()
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            write_snapshots(tmp / "big", args.customers)
            write_snapshots(tmp / "subset", args.feast_customers)
            loads, reads = {}, {}
            for kind in STORE_TYPES:
                data = tmp / ("big" if kind.startswith("ours") else "subset")
                repo = tmp / f"repo-{kind}"
                make_repo(repo, kind, redis)
                loads[kind] = run_child("--child", "load", kind, str(repo), str(data))
                n = loads[kind]["customers"]
                reads[kind] = run_child("--child", "read", kind, str(repo), str(int(n)), "--reads", str(args.reads))
                print(f"{kind:13s} loaded {int(n):>9,} customers in {loads[kind]['seconds']:7.1f} s "
                      f"({n / loads[kind]['seconds']:>9,.0f}/s), peak {loads[kind]['peak_gb']:.2f} GB; "
                      f"read p50 {reads[kind]['p50_ms']:.3f} ms p99 {reads[kind]['p99_ms']:.3f} ms", flush=True)
    finally:
        redis_proc.terminate()

    def rate(kind: str) -> float:
        return loads[kind]["customers"] / loads[kind]["seconds"]

    print(f"\nMaterialisation, {VIEWS * PER_VIEW} float features in {VIEWS} views "
          f"(ours: {args.customers:,} customers; Feast's own: {args.feast_customers:,}-customer subset)")
    for ours, theirs in (("ours-sqlite", "feast-sqlite"), ("ours-redis", "feast-redis")):
        print(f"  {ours:12s} {rate(ours):>10,.0f} customers/s, peak {loads[ours]['peak_gb']:.2f} GB   vs "
              f"{theirs} {rate(theirs):>8,.0f}/s, peak {loads[theirs]['peak_gb']:.2f} GB   ratio {rate(ours) / rate(theirs):5.1f}x")
    print("  target: >= 30x `feast materialize`, peak < 1 GB")
    print(f"\nOnline read, one customer, {VIEWS * PER_VIEW} features via get_online_features ({args.reads} calls, in process)")
    for kind in STORE_TYPES:
        print(f"  {kind:13s} p50 {reads[kind]['p50_ms']:.3f} ms   p99 {reads[kind]['p99_ms']:.3f} ms")


if __name__ == "__main__":
    main()
