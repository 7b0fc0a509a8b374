"""Benchmark: the real-time API's latency beside Feast's own feature server, in one run, on
the same machine and the same online store, interleaved so that both see the same noise.

1. The trained base: a workspace of benchmarks/policy.py (`clm run -n 100000`, built once
   and reused: `--base /tmp/clm-bench-policy-100000` is what `policy.py` builds for 100,000).
2. Time to ready: each server started and stopped --starts times, in turn (one at a time):
   seconds from the command to its readiness answering 200 (clm: /readyz, models loaded and
   the online store read; feast: /health), then the first request's latency; medians.
3. Starts `clm serve` (one worker) and `feast serve --no-access-log` (one worker, its other
   defaults, on the workspace's feature repo) on free loopback ports.
4. Both servers get the same customers (random live ones), interleaved:
   - concurrency 1: 100 warm-up requests each, then --requests request pairs, one to each
     server in turn (which goes first alternates); client-side latency, p50 and p99;
   - concurrency --concurrency: --rounds rounds of --duration / --rounds seconds per
     server, the servers alternating (one at a time, never both at once: 2 cores);
     requests/s, latency and errors (non-200 answers and failed calls) summed over rounds.
     clm:   POST /score {"customer_id": ...}: features, every model, reasons and the decision
     feast: POST /get-online-features for the churn model's feature service: features only

Goals (issue 27): clm's p99 no slower than `feast serve` fetching features alone at
concurrency 1; at concurrency 8, clm's throughput at least feast serve's with 0 errors. The
time to ready has no goal (a restart's wait, shown beside feast serve's own start: clm's
worker loads Feast and the models, then reads the store before it says ready).

    .venv/bin/python benchmarks/api_latency.py [--duration 60] [--base /tmp/clm-bench-policy-100000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
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
from pipelines.servers import free_port, running_server  # noqa: E402  (the same start-and-stop as the tests')

BIN = ROOT / ".venv" / "bin"
Call = Callable[[httpx.Client, str], int]


def server(command: list[str], ready_url: str, cwd: Path, log: Path, extra: dict[str, str]):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return running_server(command, ready_url, log, {**env, "PYTHONPATH": str(ROOT), **extra}, cwd=cwd, timeout_s=240)


def time_to_ready(starts: dict[str, Callable[[int], tuple[list[str], str, Path, dict[str, str]]]],
                  call: dict[str, Call], ids: list[str], n: int, logs: Path) -> dict[str, tuple[float, float]]:
    """Median seconds from the command to readiness, and median first-request latency (ms),
    per server: each started n times, in turn (the first alternating), never two at once."""
    names = list(starts)
    ready: dict[str, list[float]] = {name: [] for name in names}
    first: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        for name in names[i % 2:] + names[:i % 2]:
            port = free_port()
            command, ready_path, cwd, extra = starts[name](port)
            began = time.perf_counter()
            with server(command, f"http://127.0.0.1:{port}{ready_path}", cwd, logs / f"start-{i}.log", extra):
                ready[name].append(time.perf_counter() - began)
                with httpx.Client(timeout=60, base_url=f"http://127.0.0.1:{port}") as client:
                    asked = time.perf_counter()
                    status = call[name](client, ids[i])
                    first[name].append((time.perf_counter() - asked) * 1000)
                    if status != 200:
                        raise RuntimeError(f"{name}: the first request after the start answered {status}")
    return {name: (float(np.median(ready[name])), float(np.median(first[name]))) for name in names}


def interleaved(calls: dict[str, Call], bound: dict[str, str], ids: list[str], n: int) -> dict[str, tuple[np.ndarray, int]]:
    """Latencies (ms) of n sequential calls per server, one to each in turn (the first
    alternating), and each server's count of non-200 answers."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    errors = dict.fromkeys(names, 0)
    clients = {name: httpx.Client(timeout=30, base_url=bound[name]) for name in names}
    try:
        for i in range(100):  # warm-up
            for name in names:
                calls[name](clients[name], ids[i % len(ids)])
        for i in range(n):
            customer = ids[(100 + i) % len(ids)]
            for name in (names if i % 2 == 0 else names[::-1]):
                started = time.perf_counter()
                status = calls[name](clients[name], customer)
                times[name].append((time.perf_counter() - started) * 1000)
                errors[name] += status != 200
    finally:
        for client in clients.values():
            client.close()
    return {name: (np.array(times[name]), errors[name]) for name in names}


def concurrent(call: Call, base_url: str, ids: list[str], clients: int, seconds: float,
               offset: int) -> tuple[list[float], int, int]:
    """Latencies (ms), non-200 answers or failed calls, and the count of calls of
    `clients` loops for `seconds`."""
    times: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def loop(k: int) -> None:
        with httpx.Client(timeout=30, base_url=base_url) as client:
            i = offset + k
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
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors[0], len(times)


def concurrent_rounds(calls: dict[str, Call], bound: dict[str, str], ids: list[str], clients: int, seconds: float,
                      rounds: int) -> dict[str, tuple[np.ndarray, int, float]]:
    """`concurrent` per server in alternating rounds (seconds / rounds each): latencies,
    errors and requests/s over all its rounds."""
    names = list(calls)
    out: dict[str, tuple[list[float], int, int, float]] = {name: ([], 0, 0, 0.0) for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            started = time.monotonic()
            times, errors, count = concurrent(calls[name], bound[name], ids, clients, seconds / rounds,
                                              offset=r * 997)
            elapsed = time.monotonic() - started
            t, e, c, s = out[name]
            out[name] = (t + times, e + errors, c + count, s + elapsed)
    return {name: (np.array(t), e, c / s) for name, (t, e, c, s) in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("/tmp/clm-bench-policy-100000"))
    parser.add_argument("--base-customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000, help="Sequential requests per server.")
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of the concurrent run per server.")
    parser.add_argument("--rounds", type=int, default=6, help="Alternating rounds the concurrent run is cut into.")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--starts", type=int, default=3, help="Starts per server for the time to ready.")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from policy import build

    from clm.workspace import Workspace
    from features.snapshots import group_dir

    build(args.base, args.base_customers, None)
    ws = Workspace(args.base)
    latest = max(group_dir(ws, "profile").glob("*.parquet"))
    profile = pd.read_parquet(latest, columns=["customer_id", "is_subscribed"])
    live = profile.loc[profile.is_subscribed == 1, "customer_id"].tolist()
    ids = list(np.random.default_rng(0).choice(live, size=min(5000, len(live)), replace=False))

    def clm_call(client: httpx.Client, customer: str) -> int:
        return client.post("/score", json={"customer_id": customer}).status_code

    def feast_call(client: httpx.Client, customer: str) -> int:
        body = {"feature_service": "churn_features", "entities": {"customer_id": [customer]}}
        return client.post("/get-online-features", json=body).status_code

    logs = Path(tempfile.mkdtemp(prefix="clm-api-latency-"))

    def clm_start(port: int) -> tuple[list[str], str, Path, dict[str, str]]:
        # A BentoML home of its own (its Prometheus folder): no other server's on the host.
        return ([str(BIN / "clm"), "serve", "--port", str(port), "-w", str(args.base), "--drain-seconds", "0"],
                "/readyz", ROOT, {"BENTOML_HOME": str(logs / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"})

    def feast_start(port: int) -> tuple[list[str], str, Path, dict[str, str]]:
        return ([str(BIN / "feast"), "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"], "/health",
                args.base / "feature_repo", {})

    calls: dict[str, Call] = {"clm /score": clm_call, "feast serve": feast_call}
    starts = {"clm /score": clm_start, "feast serve": feast_start}
    started = time_to_ready(starts, calls, ids, args.starts, logs)
    clm_port, feast_port = free_port(), free_port()
    clm_command, clm_ready, clm_cwd, clm_env = clm_start(clm_port)
    feast_command, feast_ready, feast_cwd, feast_env = feast_start(feast_port)
    with server(clm_command, f"http://127.0.0.1:{clm_port}{clm_ready}", clm_cwd, logs / "clm-serve.log", clm_env):
        with server(feast_command, f"http://127.0.0.1:{feast_port}{feast_ready}", feast_cwd, logs / "feast-serve.log",
                    feast_env):
            bound = {"clm /score": f"http://127.0.0.1:{clm_port}", "feast serve": f"http://127.0.0.1:{feast_port}"}
            sequential = interleaved(calls, bound, ids, args.requests)
            loaded = concurrent_rounds(calls, bound, ids, args.concurrency, args.duration, args.rounds)
    print(f"\nLatency, {args.base} ({args.base_customers:,} customers), one worker each, interleaved; "
          f"c=1: {args.requests:,} requests each after 100 warm-up, one to each server in turn; "
          f"c={args.concurrency}: {args.rounds} alternating rounds, {args.duration:.0f} s each in all")
    c = args.concurrency
    print(f"{'server':<14}{'c=1 p50':>9}{'p99':>8}{'max':>8}{'errors':>8}   {f'c={c} req/s':>10}{'p50':>8}"
          f"{'p99':>8}{'errors':>8}")
    for name in calls:
        seq, seq_errors = sequential[name]
        conc, conc_errors, rate = loaded[name]
        print(f"{name:<14}{np.percentile(seq, 50):>9.2f}{np.percentile(seq, 99):>8.2f}{seq.max():>8.1f}"
              f"{seq_errors:>8}   {rate:>10.0f}{np.percentile(conc, 50):>8.2f}{np.percentile(conc, 99):>8.2f}"
              f"{conc_errors:>8}")
    clm_seq, feast_seq = sequential["clm /score"][0], sequential["feast serve"][0]
    ratio50 = np.percentile(clm_seq, 50) / np.percentile(feast_seq, 50)
    ratio99 = np.percentile(clm_seq, 99) / np.percentile(feast_seq, 99)
    rate_ratio = loaded["clm /score"][2] / loaded["feast serve"][2]
    errors = loaded["clm /score"][1]
    print(f"clm / feast serve: c=1 p50 {ratio50:.2f}x, p99 {ratio99:.2f}x (goal p99 <= 1.00x: "
          f"{'met' if ratio99 <= 1 else 'NOT met'}); c={c} throughput {rate_ratio:.2f}x (goal >= 1.00x: "
          f"{'met' if rate_ratio >= 1 else 'NOT met'}), clm errors {errors} (goal 0: {'met' if errors == 0 else 'NOT met'})")
    clm_ready_s, feast_ready_s = started["clm /score"][0], started["feast serve"][0]
    print(f"Time to ready (median of {args.starts} starts each, command to readiness 200; then the first "
          f"request): clm serve {clm_ready_s:.1f} s, first /score {started['clm /score'][1]:.0f} ms; feast serve "
          f"{feast_ready_s:.1f} s, first read {started['feast serve'][1]:.0f} ms; clm / feast serve "
          f"{clm_ready_s / feast_ready_s:.2f}x")
    print(f"(server logs in {logs})")


if __name__ == "__main__":
    main()
