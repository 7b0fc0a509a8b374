"""The real-time API, driven as a CRM would drive it: a real `clm serve` on a loopback port
over a trained workspace (the README's main job at 2,000 customers), called over HTTP.

Expected values come from the workspace itself (the registry's champions, the offline
snapshot the online store was loaded from, the catalogue's weights), never from the
API's own answers.
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings

from clm.domain import ALL_ACTIONS
from clm.workspace import Workspace
from decisions.catalogue import DEFAULT_CATALOGUE, load_catalogue
from features.snapshots import snapshot_chunks
from features.store import latest_snapshot_date
from serving.auth import key_hashes
from tests.apiserver import running_api
from tests.clirun import invoke
from tests.conftest import copy_trained
from training import registry

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
MODELS = ("churn", "upsell", "stage", "clv", "uplift")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def served_ws(main_job, tmp_path_factory) -> Workspace:
    return copy_trained(main_job, tmp_path_factory.mktemp("api") / "ws")


KEY = "crm-key-2"  # the API runs with keys (from the environment and a file): every call sends one
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text("# CRM keys\nfile-key\n")
    return path


@pytest.fixture(scope="module")
def api(served_ws, keys_file):
    env = {"CLM_API_KEYS": f"crm-key-1, {KEY}", "CLM_API_KEYS_FILE": str(keys_file)}
    with running_api(served_ws.root, "--reload-seconds", "0.5", env=env) as url:
        yield url


@pytest.fixture(scope="module")
def online(served_ws) -> pd.DataFrame:
    """Every customer's features as the online store holds them: the offline snapshot of
    the date it was loaded from."""
    manifest = served_ws.read_manifest()
    date = latest_snapshot_date(served_ws, ["profile"], manifest.end)
    return pd.concat(snapshot_chunks(served_ws, date, 100_000), ignore_index=True).assign(date=date)


def champions(ws: Workspace) -> dict[str, str | None]:
    client = registry.connect(ws)
    return {m: registry.alias_version(client, m, registry.CHAMPION) for m in MODELS}


def live_ids(online: pd.DataFrame, n: int) -> list[str]:
    return online.loc[online.is_subscribed == 1, "customer_id"].head(n).tolist()


def same(a: object, b: object) -> bool:
    """Equal answers, numbers to 1e-9 (a batch of rows and one row may add up in another
    order), but for each answer's own decision_id (two calls, two decisions)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a if k != "decision_id")
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b


def post(url: str, path: str, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=30, headers=AUTH if headers is None else headers)


# ------------------------------------------------------------------ /score
def test_score_answers_a_live_customer_with_scores_and_ranked_actions(api, served_ws, online):
    customer = live_ids(online, 1)[0]
    r = post(api, "/score", {"customer_id": customer})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customer_id"] == customer and body["in_population"] is True
    versions = champions(served_ws)
    for model, column, low, high in (("churn", "churn_probability", 0, 1), ("upsell", "upsell_probability", 0, 1),
                                     ("clv", "clv", 0, np.inf)):
        # A model the gate refused for this small business has no champion: its score is null.
        assert (low <= body[column] <= high) if versions[model] else body[column] is None, model
    probabilities = body["stage_probabilities"]
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)
    assert body["predicted_stage"] == max(probabilities, key=probabilities.get)
    assert pd.Timestamp(body["feature_timestamp"]) == online["date"].iloc[0]  # freshness: the loaded snapshot
    assert body["model_versions"] == versions
    assert body["decision_id"].startswith("api-") and len(body["decision_id"]) == 36  # its own, logged
    actions = body["actions"]
    assert 1 <= len(actions) <= 3 and all(a["action"] in ALL_ACTIONS for a in actions)
    scores = [a["score"] for a in actions]
    assert scores == sorted(scores, reverse=True)
    for a in actions:
        if a["action"] != "none":  # value = its parts, by hand; only paying actions are recommended
            assert a["expected_value"] > 0
            assert a["expected_value"] == pytest.approx(a["retention_value"] + a["upgrade_value"] - a["cost"])
            assert a["reasons"][0].startswith(f"{a['action']}: expected value")
        assert a["reasons"]
    assert len(post(api, "/score", {"customer_id": customer, "max_actions": 1}).json()["actions"]) == 1


def test_the_context_multiplies_the_catalogues_weights(api, online):
    """An intent weighs each action by its target and the channel the customer is on, as
    the catalogue says: the ratio of scores with and without the context, by hand."""
    catalogue = load_catalogue()
    target = {e.id: e.target for e in catalogue.contact_actions}
    channel = {e.id: e.channel for e in catalogue.contact_actions}
    weights = catalogue.context.intent["cancelling"]
    compared = 0
    for customer in live_ids(online, 40):
        plain = post(api, "/score", {"customer_id": customer, "max_actions": 7}).json()["actions"]
        moment = post(api, "/score", {"customer_id": customer, "max_actions": 7,
                                      "context": {"intent": "cancelling", "channel": "phone"}}).json()["actions"]
        before = {a["action"]: a["score"] for a in plain if a["action"] != "none"}
        for a in moment:
            if a["action"] in before:
                expected = weights.get(target[a["action"]], 1.0) * (
                    catalogue.context.same_channel if channel[a["action"]] == "phone" else 1.0)
                assert a["score"] == pytest.approx(before[a["action"]] * expected), a
                compared += 1
    assert compared >= 5


def test_a_cancelled_customer_is_answered_with_nulls_and_no_action(api, online):
    cancelled = online.loc[online.is_subscribed == 0, "customer_id"].iloc[0]
    body = post(api, "/score", {"customer_id": cancelled}).json()
    assert body["in_population"] is False and body["stage"] == "churned"
    assert body["churn_probability"] is None and body["upsell_probability"] is None and body["clv"] is None
    assert [a["action"] for a in body["actions"]] == ["none"] and "no live contract" in body["actions"][0]["reasons"][0]


@pytest.mark.parametrize("body, status, field", [
    ({"customer_id": "nobody"}, 404, "customer_id"),
    ({}, 400, "customer_id"),
    ({"customer_id": ""}, 400, "customer_id"),
    ({"customer_id": 42}, 400, "customer_id"),
    ({"customer_id": "C0000001", "max_actions": 0}, 400, "max_actions"),
    ({"customer_id": "C0000001", "max_actions": "three"}, 400, "max_actions"),
    ({"customer_id": "C0000001", "context": {"channel": "fax"}}, 400, "channel"),
    ({"customer_id": "C0000001", "context": {"intent": "shopping"}}, 422, "context.intent"),
    ({"customer_id": "C0000001", "context": "cancelling"}, 400, "context"),
])
def test_score_refuses_bad_requests_naming_the_field(api, body, status, field):
    r = post(api, "/score", body)
    assert r.status_code == status, r.text
    assert field in r.text


def test_malformed_json_is_a_400_not_a_server_error(api):
    for raw in (b"not json", b"{", b"[1, 2]", b"\xff\xfe"):
        r = httpx.post(f"{api}/score", content=raw, headers={"content-type": "application/json", **AUTH}, timeout=30)
        assert r.status_code == 400, (raw, r.text)


def test_the_curl_line_clm_run_prints_works_against_clm_serve(api, main_job):
    said = main_job[1].output
    assert f"clm serve -w {main_job[0]}" in said
    line = re.search(r"curl -s -X POST http://127\.0\.0\.1:3000/score -H 'content-type: application/json' "
                     r"-d '(\{.*?\}\})'", said)
    assert line, said[-600:]
    r = httpx.post(f"{api}/score", content=line.group(1), headers={"content-type": "application/json", **AUTH},
                   timeout=30)
    assert r.status_code == 200 and r.json()["in_population"], r.text


# ------------------------------------------------------------------ /score_batch
def test_score_batch_answers_each_known_customer_and_lists_the_unknown(api, online):
    first, second = live_ids(online, 2)
    r = post(api, "/score_batch", {"customer_ids": [second, "nobody", first, second], "max_actions": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["customer_id"] for x in body["results"]] == [second, first] and body["unknown"] == ["nobody"]
    alone = post(api, "/score", {"customer_id": first, "max_actions": 2}).json()
    assert same(body["results"][1], alone)  # a customer's answer does not depend on who else is asked


def test_score_batch_over_the_limit_is_413_and_empty_is_400(api):
    r = post(api, "/score_batch", {"customer_ids": [f"C{i:07d}" for i in range(1001)]})
    assert r.status_code == 413 and "at most 1,000" in r.json()["error"] and r.json()["field"] == "customer_ids"
    assert post(api, "/score_batch", {"customer_ids": []}).status_code == 400


# ------------------------------------------------------------------ /score_features
def _features_of(online: pd.DataFrame, customer: str) -> dict[str, object]:
    row = online.set_index("customer_id").loc[customer].drop(["event_timestamp", "date"])
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}


def test_score_features_scores_what_the_caller_sends(api, online):
    customer = live_ids(online, 3)[2]
    sent = _features_of(online, customer)
    stored = post(api, "/score", {"customer_id": customer}).json()
    r = post(api, "/score_features", {"customer_id": customer, "features": sent,
                                      "as_of": online["date"].iloc[0].isoformat()})
    assert r.status_code == 200, r.text
    assert same(r.json(), stored)  # the same features at the same time: the same answer
    # Fresher data from the CRM changes the answer: a customer gone quiet for 60 days.
    quiet = post(api, "/score_features", {"customer_id": customer, "as_of": online["date"].iloc[0].isoformat(),
                                          "features": {**sent, "days_since_last_activity": 60.0, "sessions_7d": 0.0,
                                                       "sessions_30d": 0.0}}).json()
    assert quiet["churn_probability"] != stored["churn_probability"]


@pytest.mark.parametrize("features, status, field", [
    ({"tenure_days": 10, "no_such_feature": 1}, 422, "features.no_such_feature"),
    ({"tenure_days": "long"}, 422, "features.tenure_days"),
    ({"plan": 3}, 422, "features.plan"),
    ({"tenure_days": True}, 400, "tenure_days"),  # refused by the schema: neither a number nor text
    ({"tenure_days": [1]}, 400, "tenure_days"),
])
def test_score_features_refuses_unknown_names_and_wrong_types(api, features, status, field):
    r = post(api, "/score_features", {"customer_id": "X1", "features": features})
    assert r.status_code == status, r.text
    assert field in r.text


# ------------------------------------------------------------------ /feedback
def test_feedback_lands_on_the_decision_the_api_returned(api, served_ws, online):
    """Each answer is logged under an id of its own (two calls for one customer: two ids);
    feedback is taken for an id clm gave and an action it recommended, appended to one
    journal (no file per call)."""
    from decisions.journal import Journal

    customer = live_ids(online, 1)[0]
    first, second = (post(api, "/score", {"customer_id": customer}).json() for _ in range(2))
    assert first["decision_id"] != second["decision_id"]
    journal = Journal(served_ws.root / "decisions")
    logged = journal.read("api_decisions").set_index("decision_id")
    for answer in (first, second):
        row = logged.loc[answer["decision_id"]]
        assert row.customer_id == customer and json.loads(row.actions) == [a["action"] for a in answer["actions"]]
        assert row.action == answer["actions"][0]["action"]
    decision, recommended = first["decision_id"], first["actions"][-1]["action"]
    r = post(api, "/feedback", {"decision_id": decision, "response": "accepted", "action": recommended})
    assert r.status_code == 200 and r.json() == {"decision_id": decision, "response": "accepted",
                                                 "action": recommended, "recorded": True}
    feedback = journal.read("feedback")
    assert feedback.iloc[-1][["decision_id", "response", "action"]].tolist() == [decision, "accepted", recommended]
    assert not (served_ws.root / "decisions" / "feedback").exists()
    # An id clm never gave: 404, nothing stored; an action it did not recommend: 422; a wrong response: 400.
    for junk in ("garbage", f"{online['date'].iloc[0]:%Y%m%d}-nobody", "api-" + "0" * 32):
        r = post(api, "/feedback", {"decision_id": junk, "response": "accepted"})
        assert r.status_code == 404 and "No decision" in r.json()["error"], r.text
    unlisted = next(a for a in ALL_ACTIONS if a not in {x["action"] for x in first["actions"]})
    r = post(api, "/feedback", {"decision_id": decision, "response": "rejected", "action": unlisted})
    assert r.status_code == 422 and r.json()["field"] == "action"
    assert len(journal.read("feedback")) == len(feedback)
    bad = post(api, "/feedback", {"decision_id": decision, "response": "maybe"})
    assert bad.status_code == 400 and "response" in bad.text


# ------------------------------------------------------------------ health, metrics, OpenAPI
def test_health_readiness_metrics_and_the_openapi_page(api):
    assert httpx.get(f"{api}/healthz").status_code == 200
    assert httpx.get(f"{api}/readyz").status_code == 200
    post(api, "/score", {"customer_id": "nobody"})
    # BentoML observes a request's duration after its answer is sent: on a busy machine
    # /metrics may be read first, so it is read again for a few seconds.
    for _ in range(50):
        metrics = httpx.get(f"{api}/metrics").text
        if "request_duration_seconds" in metrics and 'endpoint="/score"' in metrics:
            break
        time.sleep(0.1)
    assert "request_duration_seconds" in metrics and 'endpoint="/score"' in metrics
    spec = httpx.get(f"{api}/docs.json").json()
    for path in ("/score", "/score_batch", "/score_features", "/feedback"):
        assert path in spec["paths"], path
    text = json.dumps(spec)
    assert "C0000042" in text and "cancelling" in text  # the examples show
    assert httpx.get(f"{api}/").status_code == 200


# ------------------------------------------------------------------ fuzz
def test_fuzzing_the_openapi_schema_finds_no_server_error(api):
    """Schemathesis generates requests from the OpenAPI page, valid ones and invalid ones,
    for every endpoint of ours: none may get a 5xx."""
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(f"{api}/docs.json").include(
        path_regex="^/(score|score_batch|score_features|feedback)$")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 4
    calls: list[int] = []
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def fuzz(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call(base_url=api, timeout=30, headers=AUTH)
                calls.append(response.status_code)
                case.validate_response(response, checks=[not_a_server_error])

            fuzz()
    assert len(calls) >= 100 and max(calls) < 500 and any(c == 200 for c in calls)


# ------------------------------------------------------------------ API and batch agree
def test_the_api_and_the_nightly_batch_agree(api, served_ws, online, tmp_path):
    """The same customers, features and time: the batch (no limiting budget, no capacities, no
    exploration: each customer decided on their own) gives the API's scores and its first
    action."""
    source = DEFAULT_CATALOGUE
    catalogue = yaml.safe_load(source.read_text())
    for action in catalogue["actions"]:
        action.pop("daily_capacity", None)
    unlimited = tmp_path / "unlimited.yaml"
    unlimited.write_text(yaml.safe_dump(catalogue))
    date = online["date"].iloc[0]
    out = tmp_path / "batch.parquet"
    done = invoke("score", "--as-of", f"{date:%Y-%m-%d}", "--out", str(out), "--exploration", "0", "--budget", "1e12",
                  "--catalogue", str(unlimited), "-w", str(served_ws.root))
    assert done.exit_code == 0, done.output
    batch = pd.read_parquet(out).set_index("customer_id")
    ids = online["customer_id"].head(300).tolist()
    answers = post(api, "/score_batch", {"customer_ids": ids, "max_actions": 1}).json()["results"]
    assert len(answers) == len(ids)
    acted = 0
    for a in answers:
        b = batch.loc[a["customer_id"]]
        for column in ("churn_probability", "upsell_probability", "clv"):
            assert (a[column] is None and pd.isna(b[column])) or a[column] == pytest.approx(b[column], rel=1e-9)
        assert a["stage"] == b["stage"] and a["predicted_stage"] == b["predicted_stage"]
        if a["in_population"]:
            assert json.loads(b["stage_probabilities"]) == a["stage_probabilities"]
            first = a["actions"][0]
            assert first["action"] == b["action"], a["customer_id"]
            assert first["expected_value"] == pytest.approx(b["action_value"], abs=1e-9)
            assert json.loads(b["reasons"]) == first["reasons"]
            acted += first["action"] != "none"
        else:
            assert pd.isna(b["action"])
        assert json.loads(b["model_versions"]) == a["model_versions"]
    assert acted >= 10


# ------------------------------------------------------------------ hot swap (changes the registry: last)
def test_a_promoted_champion_is_served_without_a_restart_or_a_failed_request(api, served_ws, online):
    client = registry.connect(served_ws)
    old = champions(served_ws)
    current = client.get_model_version(registry.registered_name("churn"), old["churn"])
    new = client.create_model_version(registry.registered_name("churn"), current.source, run_id=current.run_id).version
    ids = live_ids(online, 20)
    statuses: list[int] = []
    seen: list[dict] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=30, headers=AUTH) as http:
            i = 0
            while not stop.is_set():
                r = http.post(f"{api}/score", json={"customer_id": ids[i % len(ids)]})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    seen.append(r.json()["model_versions"])
                i += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    promoted = invoke("models", "promote", "churn", str(new), "-w", str(served_ws.root))
    assert promoted.exit_code == 0, promoted.output
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (seen and seen[-1]["churn"] == str(new)):
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert seen[0]["churn"] == old["churn"] and seen[-1]["churn"] == str(new)
    # Every answer came from one set of versions: the old one or the new one, never a mix.
    assert {json.dumps(v, sort_keys=True) for v in seen} <= {
        json.dumps(old, sort_keys=True), json.dumps({**old, "churn": str(new)}, sort_keys=True)}


# ------------------------------------------------------------------ auth
def test_api_keys_guard_the_endpoints_and_leave_health_open(api):
    body = {"customer_id": "nobody"}
    assert post(api, "/score", body, headers={}).status_code == 401
    assert post(api, "/score", body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert post(api, "/score_batch", {"customer_ids": ["a"]}, headers={}).status_code == 401
    assert post(api, "/score_features", {"customer_id": "a", "features": {}}, headers={}).status_code == 401
    assert post(api, "/feedback", {"decision_id": "x", "response": "accepted"}, headers={}).status_code == 401
    for headers in ({"X-API-Key": KEY}, {"X-API-Key": "file-key"}, {"Authorization": "Bearer crm-key-1"}):
        assert post(api, "/score", body, headers=headers).status_code == 404  # past the guard: unknown customer
    for path in ("/healthz", "/readyz", "/metrics", "/docs.json"):
        assert httpx.get(f"{api}{path}").status_code == 200, path


def test_only_hashes_of_the_keys_are_kept(tmp_path):
    hashes = key_hashes({"CLM_API_KEYS": "a-secret, ,b-secret"})
    assert len(hashes) == 2 and all(len(h) == 32 for h in hashes)
    assert not any(b"secret" in h for h in hashes)
    assert key_hashes({}) == frozenset()  # no key: the API is open


def test_clm_serve_refuses_what_it_cannot_serve_before_starting(trained_copy):
    ws = trained_copy.root
    assert invoke("serve", "--port", "70000", "-w", str(ws)).mentions("--port 70000 is not a port number")
    assert invoke("serve", "--workers", "0", "-w", str(ws)).mentions("--workers 0 is out of bounds: it must be from 1")
    (ws / "feature_repo" / "online.db").unlink()
    empty = invoke("serve", "-w", str(ws))
    assert empty.exit_code == 2 and empty.mentions("is empty: run `clm features materialize")
    (ws / "feature_repo" / "feature_store.yaml").unlink()
    missing = invoke("serve", "-w", str(ws))
    assert missing.exit_code == 2 and missing.mentions("No feature store in") and "Traceback" not in missing.output
