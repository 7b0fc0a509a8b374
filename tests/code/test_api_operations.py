"""The real-time API as operations see it, each against a real `clm serve` on loopback: its
metrics are its own, its readiness tells the truth about the online store and recovers with
it, SIGTERM drains it, and its docs page is clm's and calls nothing outside."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from clm.workspace import Workspace
from features.repo import ONLINE_DB, repo_dir
from pipelines.servers import answers
from serving.vocabulary import example_customer
from tests.apiserver import running_api, wait_until
from tests.conftest import copy_trained

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ops_ws(main_job, tmp_path_factory):
    return copy_trained(main_job, tmp_path_factory.mktemp("ops") / "ws")


def a_customer(ws: Workspace) -> str:
    """A live customer the online store knows (the one `clm serve` shows)."""
    return example_customer(ws)


def requests_counted(url: str, endpoint: str = "/score") -> float:
    """bentoml_service_request_total for an endpoint, summed over response codes."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(
        r'bentoml_service_request_total\{endpoint="%s"[^}]*\} ([0-9.e+]+)' % re.escape(endpoint), text))


def counted_after(url: str, at_least: float, timeout_s: float = 10.0) -> float:
    """The count once it reaches `at_least` (BentoML counts after the answer is sent)."""
    deadline = time.monotonic() + timeout_s
    while (count := requests_counted(url)) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


@pytest.fixture(scope="module")
def ops_api(ops_ws):
    with running_api(ops_ws.root) as url:
        yield url


def test_each_server_keeps_its_own_metrics(ops_ws, ops_api):
    """A second server on the host used to empty the first one's Prometheus folder: the
    first then read 0 requests for ever."""
    first = ops_api
    customer = a_customer(ops_ws)
    before = requests_counted(first)
    for _ in range(3):
        assert httpx.post(f"{first}/score", json={"customer_id": customer}, timeout=30).status_code == 200
    assert counted_after(first, before + 3) == before + 3
    with running_api(ops_ws.root) as second:
        assert httpx.post(f"{second}/score", json={"customer_id": customer}, timeout=30).status_code == 200
        assert httpx.post(f"{first}/score", json={"customer_id": customer}, timeout=30).status_code == 200
        assert counted_after(first, before + 4) == before + 4
        assert counted_after(second, 1) == 1


def test_readiness_tells_the_truth_about_the_online_store_and_recovers(trained_copy, tmp_path):
    db = repo_dir(trained_copy) / ONLINE_DB
    with running_api(trained_copy.root) as url:
        customer = a_customer(trained_copy)
        score = lambda: httpx.post(f"{url}/score", json={"customer_id": customer}, timeout=30)  # noqa: E731
        ready = lambda: answers(f"{url}/readyz")  # noqa: E731
        assert score().status_code == 200 and ready()
        # The store's file moved away: not ready (it used to stay 200); back: ready again.
        away = db.with_name("online.away")
        db.rename(away)
        assert wait_until(lambda: not ready()), "readyz stayed 200 with the online store gone"
        r = httpx.get(f"{url}/readyz", timeout=10)
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/json")
        away.rename(db)
        assert wait_until(ready), "readyz did not come back with the store"
        assert score().status_code == 200
        # Truncated under the server: not ready, then 503 (it was a 500 until a restart); restored:
        # ready and answering again, no restart.
        original = tmp_path / "online.db"
        shutil.copyfile(db, original)
        with db.open("r+b") as f:
            f.truncate(4096)
        assert wait_until(lambda: not ready()), "readyz stayed 200 with the store truncated"
        broken = score()
        assert broken.status_code == 503, broken.text
        assert set(broken.json()) == {"error", "field"} and "online store" in broken.json()["error"]
        shutil.copyfile(original, db)
        assert wait_until(ready), "readyz did not come back once the store was restored"
        assert score().status_code == 200


def test_sigterm_drains_the_server_without_losing_a_request(ops_ws):
    """Four clients behind a load balancer that polls /readyz: on SIGTERM the server says
    it is not ready at once and answers everything it is sent until the balancer has taken
    it out, then stops. It used to reset one request in flight per client."""
    with running_api(ops_ws.root, "--drain-seconds", "2") as url:
        customer = a_customer(ops_ws)
        server = next(p for p in psutil.process_iter(["cmdline"])
                      if p.info["cmdline"] and "serving.service:Clm" in " ".join(p.info["cmdline"])
                      and url.rsplit(":", 1)[1] in p.info["cmdline"])
        outcomes: Counter[str] = Counter()
        out_of_rotation, stop = threading.Event(), threading.Event()

        def balancer() -> None:
            while not stop.is_set():
                if not answers(f"{url}/readyz"):
                    out_of_rotation.set()
                time.sleep(0.2)

        def client() -> None:
            with httpx.Client(timeout=30) as http:
                while not out_of_rotation.is_set():
                    try:
                        outcomes[str(http.post(f"{url}/score", json={"customer_id": customer}).status_code)] += 1
                    except httpx.HTTPError as err:
                        outcomes[type(err).__name__] += 1

        threads = [threading.Thread(target=balancer)] + [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert out_of_rotation.wait(timeout=5), "readyz still said 200 5 s after SIGTERM"
        taken_out_after = time.monotonic() - signalled
        code = server.wait(timeout=30)
        stopped_after = time.monotonic() - signalled
        stop.set()
        for t in threads:
            t.join()
    assert set(outcomes) == {"200"} and outcomes["200"] >= 8, outcomes
    # Out of rotation at once; stopped after the 2 s drain, not a minute later (a request's body read on
    # a task of its own once held the stop for BentoML's 60 s timeout).
    assert taken_out_after < 2 <= stopped_after < 15 and code == 0, (taken_out_after, stopped_after, code)


def test_the_docs_page_is_clms_own_and_calls_nothing_outside(ops_api, chromium):
    from playwright.sync_api import sync_playwright

    from tests.browser import LAUNCH_ARGS

    url = ops_api
    page_text = httpx.get(f"{url}/", timeout=10)
    assert "default-src 'self'" in page_text.headers["content-security-policy"]
    assert "BentoML" not in page_text.text and "googletagmanager" not in page_text.text
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{url}/")
            page.wait_for_selector("text=/score_features", timeout=20_000)
            title = page.locator(".info .title").inner_text()
        finally:
            browser.close()
    assert title.startswith("clm") and "0.1.0" in title, title
    assert errors == []
    assert all(r.startswith((url, "data:")) for r in requests), requests


def test_the_service_definition_loads_no_model_library(ops_ws):
    """BentoML's arbiter imports the service module only to read its routes (then a worker
    imports it again): Feast, MLflow and LightGBM there cost every start ~4 s before a
    request could be answered (the restart finding). They load in the worker alone."""
    heavy = ("feast", "mlflow", "lightgbm", "sklearn", "scipy")
    probe = ("import sys, serving.service; "
             f"print(' '.join(m for m in {heavy!r} if m in sys.modules) or 'none')")
    env = {**os.environ, "CLM_WORKSPACE": str(ops_ws.root)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["none"]
