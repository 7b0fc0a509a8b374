"""Benchmark: the real-time API's latency beside Feast's own feature server, in one run, on
the same machine and the same online store.

1. The trained base: the workspace of benchmarks/policy.py (`clm run -n 100000`, built once).
2. Starts `clm serve` (one worker) and `feast serve --no-access-log` (one worker, its other
   defaults, on the workspace's feature repo) on loopback ports.
3. Each server gets the same customers (random live ones): 100 warm-up requests, then 1,000
   sequential requests, then 8 concurrent clients for --duration seconds. Client-side
   latency, p50 and p99; requests/s and errors under concurrency.
     clm:   POST /score {"customer_id": ...}: features, every model, reasons and the decision
     feast: POST /get-online-features for the churn model's feature service: features only

Goals (issue 12): clm's p99 no slower than `feast serve` fetching features alone; 0 errors
at concurrency 8 for 60 s.

    .venv/bin/python benchmarks/api_latency.py [--duration 60] [--base /tmp/clm-bench-policy]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from pipelines.servers import running_server  # noqa: E402  (the same start-and-stop as the tests')

BIN = ROOT / ".venv" / "bin"


def server(command: list[str], ready_url: str, cwd: Path, log: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return running_server(command, ready_url, log, {**env, "PYTHONPATH": str(ROOT)}, cwd=cwd, timeout_s=240)


def sequential(call: Callable[[httpx.Client, str], int], ids: list[str], n: int) -> tuple[np.ndarray, int]:
    """Latencies (ms) of n calls one after another, and the count of non-200 answers."""
    times, errors = [], 0
    with httpx.Client(timeout=30) as client:
        for i in range(100):  # warm-up
            call(client, ids[i % len(ids)])
        for i in range(n):
            started = time.perf_counter()
            status = call(client, ids[(100 + i) % len(ids)])
            times.append((time.perf_counter() - started) * 1000)
            errors += status != 200
    return np.array(times), errors


def concurrent(call: Callable[[httpx.Client, str], int], ids: list[str], clients: int,
               seconds: float) -> tuple[np.ndarray, int, float]:
    """Latencies (ms), non-200 answers or failed calls, and requests/s of `clients` loops."""
    times: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def loop(k: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = k
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    ok = call(client, ids[i % len(ids)]) == 200
                except httpx.HTTPError:
                    ok = False
                times.append((time.perf_counter() - started) * 1000)
                errors[0] += not ok
                i += clients

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return np.array(times), errors[0], len(times) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("/tmp/clm-bench-policy"))
    parser.add_argument("--base-customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of the concurrency-8 run per server.")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from policy import build

    from clm.workspace import Workspace
    from features.snapshots import group_dir

    build(args.base, args.base_customers)
    ws = Workspace(args.base)
    latest = max(group_dir(ws, "profile").glob("*.parquet"))
    profile = pd.read_parquet(latest, columns=["customer_id", "is_subscribed"])
    live = profile.loc[profile.is_subscribed == 1, "customer_id"].tolist()
    ids = list(np.random.default_rng(0).choice(live, size=min(5000, len(live)), replace=False))

    def clm_call(client: httpx.Client, customer: str) -> int:
        return client.post(f"{clm_url}/score", json={"customer_id": customer}).status_code

    def feast_call(client: httpx.Client, customer: str) -> int:
        body = {"feature_service": "churn_features", "entities": {"customer_id": [customer]}}
        return client.post(f"{feast_url}/get-online-features", json=body).status_code

    clm_port, feast_port = 3311, 6611
    clm_url, feast_url = f"http://127.0.0.1:{clm_port}", f"http://127.0.0.1:{feast_port}"
    results = {}
    logs = Path("/tmp")
    with server([str(BIN / "clm"), "serve", "--port", str(clm_port), "-w", str(args.base)], f"{clm_url}/readyz",
                ROOT, logs / "bench-clm-serve.log"):
        with server([str(BIN / "feast"), "serve", "-h", "127.0.0.1", "-p", str(feast_port), "--no-access-log"],
                    f"{feast_url}/health", args.base / "feature_repo", logs / "bench-feast-serve.log"):
            for name, call in (("clm /score", clm_call), ("feast serve", feast_call)):
                seq, seq_errors = sequential(call, ids, args.requests)
                conc, conc_errors, rate = concurrent(call, ids, args.concurrency, args.duration)
                results[name] = (seq, seq_errors, conc, conc_errors, rate)
    print(f"\nLatency, {args.base} ({args.base_customers:,} customers), one worker each; "
          f"{args.requests:,} sequential requests after 100 warm-up, then {args.concurrency} clients for "
          f"{args.duration:.0f} s")
    print(f"{'server':<14}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'errors':>8}   {'c=8 req/s':>10}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'errors':>8}")
    for name, (seq, seq_errors, conc, conc_errors, rate) in results.items():
        print(f"{name:<14}{np.percentile(seq, 50):>8.2f}{np.percentile(seq, 99):>8.2f}{seq.max():>8.1f}"
              f"{seq_errors:>8}   {rate:>10.0f}{np.percentile(conc, 50):>8.2f}{np.percentile(conc, 99):>8.2f}"
              f"{conc_errors:>8}")
    clm_seq, feast_seq = results["clm /score"][0], results["feast serve"][0]
    ratio50 = np.percentile(clm_seq, 50) / np.percentile(feast_seq, 50)
    ratio99 = np.percentile(clm_seq, 99) / np.percentile(feast_seq, 99)
    print(f"clm / feast serve: p50 {ratio50:.2f}x, p99 {ratio99:.2f}x "
          f"(goal p99 <= 1.00x: {'met' if ratio99 <= 1 else 'NOT met'}); "
          f"clm errors at c={args.concurrency}: {results['clm /score'][3]} (goal 0)")


if __name__ == "__main__":
    main()
