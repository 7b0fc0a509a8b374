"""What the real-time API holds and how it answers, without HTTP (the BentoML service in
`serving.service` is a thin layer over this).

The runtime opens the workspace's Feast store (online reads in process), loads the
champion models, consents, contact history and the plan price ladder, and answers with
`serving.scoring.score_and_decide`, the function the nightly batch uses. A customer is
decided as of their features' timestamp (the state clm knows), with the contacts before it.

Hot swap: `refresh()` (polled by the service) compares the registry's champion versions
with the loaded ones; a change loads the new models beside the old and then replaces one
reference, so a request in flight finishes with the models it started with, and every
answer names the versions that produced it.
"""
from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from feast.types import Float64

from clm.domain import Table
from clm.privacy import Erased, ErasureRecord
from clm.workspace import Workspace
from decisions import log as decision_log
from decisions.catalogue import Catalogue, Context, load_catalogue
from decisions.journal import ApiDecision, JournalUnavailable, new_decision_id
from features.groups import FLOAT, STRING
from serving.errors import RequestError
from serving.online import OnlineStore
from serving.scoring import (
    MODELS,
    Champions,
    CustomerAnswer,
    DecisionData,
    load_champions,
    load_decision_data,
    score_and_decide,
    with_changes,
)
from serving.vocabulary import FeatureProblem, FeatureRules, Vocabulary, example_customer, vocabulary_of
from training import registry
from training.models import Columns

TS_SUFFIX = "__ts"
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """Models and the data deciding reads, swapped as one."""

    champions: Champions
    data: DecisionData
    stamp: tuple[tuple[str, int], ...]  # what `data` was read from (paths, mtimes)
    consents_seen: int = 0  # the journal's consent changes up to this number are in `data`


class Runtime:
    def __init__(self, workspace: Workspace, tracking_uri: str | None = None, catalogue: Catalogue | None = None,
                 vocabulary: Vocabulary | None = None):
        self.workspace = workspace
        manifest = workspace.read_manifest()
        self.contractual = manifest.business == "contractual"
        self.catalogue = catalogue or load_catalogue()
        self.store = OnlineStore(workspace)
        self.probe_id = example_customer(workspace)  # a customer readiness reads
        self.service = self.store.get_feature_service("churn_features")  # every group
        fields = [f for projection in self.service.feature_view_projections for f in projection.features]
        self.features = [f.name for f in fields]
        # What each feature holds, as the workspace's Feast views declare it (the business's
        # attributes included): numbers, or text.
        self.kinds = {f.name: FLOAT if f.dtype == Float64 else STRING for f in fields}
        # What a caller may send as features (`answer_features`): ranges, rules between features, plans.
        self.rules = FeatureRules(self.kinds, vocabulary or vocabulary_of(workspace, self.catalogue))
        self.client = registry.connect(workspace, tracking_uri)
        self._lock = threading.Lock()  # one refresh at a time; readers never wait
        self._erased: tuple[int, Erased] = (-1, Erased(None, frozenset()))  # (record's time, what it names)
        self.journal = decision_log.journal(workspace)  # where every answer's decision is logged
        try:
            self.journal.ensure()
        except JournalUnavailable as err:  # the API still answers; its decisions cannot take feedback
            LOG.warning("%s Answers are given but not logged.", err)
        self.loaded = self._load()

    # -------------------------------------------------------------- loading
    def _stamp(self) -> tuple[tuple[str, int], ...]:
        folders = [self.workspace.raw_dir, decision_log.log_dir(self.workspace)]
        files = sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.parquet"))
        return tuple((str(p), p.stat().st_mtime_ns) for p in files)

    def _load(self, champions: Champions | None = None) -> Loaded:
        stamp = self._stamp()
        try:
            seen = self.journal.last_consent()  # before the data: a change during the load is applied again
        except JournalUnavailable:
            seen = 0
        data = load_decision_data(self.workspace, pd.Timestamp.max.tz_localize("UTC"), real=True)
        return Loaded(champions or load_champions(self.client, check_requirements=False), data, stamp, seen)

    def refresh(self) -> bool:
        """Load a newly promoted champion (or changed consents / contact history); True if
        anything changed. Safe to call from a background thread while requests run."""
        with self._lock:
            current = self.loaded
            models_changed = registry.champion_versions(self.client) != current.champions.versions
            data_changed = self._stamp() != current.stamp
            if not (models_changed or data_changed):
                return False
            champions = load_champions(self.client, check_requirements=False) if models_changed else current.champions
            self.loaded = (self._load(champions) if data_changed
                           else Loaded(champions, current.data, current.stamp, current.consents_seen))
            return True

    def ready(self) -> bool:
        """Models loaded (a scoring champion, or the uplift one: it alone decides) and the
        online store read for real (`OnlineStore.problem`); a store that failed is opened
        again at the next look, so readiness comes back with it."""
        champions = self.loaded.champions
        if not any(champions.versions[m] for m in MODELS) and champions.uplift is None:
            return False
        problem = self.store.problem(self.service, self.probe_id)
        if problem is not None:
            LOG.warning("not ready: %s", problem)
        return problem is None

    # -------------------------------------------------------------- answering
    def check_request(self, context: Context | None) -> None:
        if context is not None and context.intent is not None and context.intent not in self.catalogue.context.intent:
            known = ", ".join(sorted(self.catalogue.context.intent)) or "none"
            raise RequestError(422, f"context.intent '{context.intent}' is not one the catalogue knows ({known}).",
                               "context.intent")

    def online_features(self, ids: list[str]) -> tuple[Columns, list[str]]:
        """Features of the known ids from the online store (a row each, in order: numpy
        columns, `customer_id` and `event_timestamp` among them), and the unknown ids (no
        features at all)."""
        found = self.store.get_online_features(
            features=self.service, entity_rows=[{"customer_id": c} for c in ids]).to_dict(include_event_timestamps=True)
        stamps = np.array([found[f + TS_SUFFIX] for f in self.features], dtype=np.int64).max(axis=0)
        known = stamps > 0
        rows = np.flatnonzero(known)
        columns = feature_columns(found, self.features, rows, self.kinds)
        columns.data["customer_id"] = np.asarray(ids, dtype=object)[known]
        columns.data["event_timestamp"] = np.asarray(list(pd.to_datetime(stamps[known], unit="s", utc=True)),
                                                     dtype=object)
        return columns, [c for c, k in zip(ids, known) if not k]

    def answer_ids(self, ids: list[str], context: Context | None, max_actions: int) -> tuple[list[dict], list[str]]:
        self.check_request(context)
        frame, unknown = self.online_features(ids)
        return self._answer(frame, context, max_actions), unknown

    def answer_features(self, customer_id: str, values: dict[str, float | str | None], as_of: pd.Timestamp | None,
                        context: Context | None, max_actions: int) -> dict:
        self.check_request(context)
        self.refuse_erased(customer_id)
        try:
            self.rules.check(values)
        except FeatureProblem as problem:
            raise RequestError(422, str(problem), problem.field) from None
        when = as_of if as_of is not None else pd.Timestamp.now(tz="UTC")
        columns = feature_columns({f: [values.get(f)] for f in self.features}, self.features, np.arange(1), self.kinds)
        columns.data["customer_id"] = np.array([customer_id], dtype=object)
        columns.data["event_timestamp"] = np.array([when], dtype=object)
        return self._answer(columns, context, max_actions)[0]

    def _consents_stamp(self, stamp: tuple[tuple[str, int], ...] | None = None) -> tuple[tuple[str, int], ...]:
        """The part of a data stamp (default: the files now) that consents are read from."""
        files = {str(self.workspace.table_path(t)) for t in (Table.CUSTOMERS, Table.CONSENTS)}
        if stamp is None:
            return tuple((f, Path(f).stat().st_mtime_ns) for f in sorted(files) if Path(f).exists())
        return tuple(entry for entry in stamp if entry[0] in files)

    def refresh_data(self) -> None:
        """Read consents and contact history again if the customers or consents table changed
        since they were read (a consent withdrawal ingested counts from the next answer, not
        the next poll; other changes wait for the poll): two file times looked at per request."""
        try:
            if self._consents_stamp() != self._consents_stamp(self.loaded.stamp):
                with self._lock:
                    if self._consents_stamp() != self._consents_stamp(self.loaded.stamp):
                        self.loaded = self._load(self.loaded.champions)
        except Exception as err:  # a file renamed under us by an ingest: the data read before still answers
            LOG.warning("Consents and contact history not read again (%s); the poll tries again.", err)

    def with_sent_consents(self, loaded: Loaded, ids: list[str]) -> DecisionData:
        """The loaded data with the consent changes sent to the API for these customers since
        it was read applied (the journal's, read per request: every worker honours them at
        once; older ones are in the data already, in time order with the consents table's)."""
        data = loaded.data
        try:
            sent = self.journal.consents(ids, after=loaded.consents_seen)
        except JournalUnavailable as err:
            raise RequestError(503, f"{err} Consents sent to the API cannot be read: not answered, so that no "
                               "withdrawn consent is ignored.", None) from None
        if not len(sent):
            return data
        latest = sent.groupby(["customer_id", "channel"]).granted.last()
        mine = data.consents.reindex(pd.Index(ids, name="customer_id").unique(), fill_value=False)
        return replace(data, consents=with_changes(mine.copy(), latest))

    def refuse_erased(self, customer_id: str) -> None:
        """404 for a customer `clm forget` erased: nothing about them is written again (the
        erasure record read again when it changes: one file time looked at per request)."""
        path = ErasureRecord.path(self.workspace)
        stamp = path.stat().st_mtime_ns if path.exists() else 0
        if stamp != self._erased[0]:
            self._erased = (stamp, Erased.of(self.workspace))
        if self._erased[1].mask(pd.Series([customer_id]))[0]:
            raise RequestError(404, f"customer {customer_id!r} was erased (`clm forget`): clm keeps nothing about them.",
                               "customer_id")

    def consent(self, customer_id: str, channel: str, granted: bool) -> None:
        """A consent change a CRM sends: recorded in the journal, honoured by the next answer
        (every worker reads the journal) and the next batch."""
        self.refuse_erased(customer_id)
        self.journal.add_consent(customer_id, channel, granted, pd.Timestamp.now(tz="UTC"))

    def _answer(self, frame: Columns, context: Context | None, max_actions: int) -> list[dict]:
        """Each customer's answer, every decision logged in the journal under an id of its own
        (the one the answer carries, for /feedback). frame: `online_features`' columns."""
        self.refresh_data()
        loaded = self.loaded  # one reference for the whole request: a swap cannot mix versions
        data = self.with_sent_consents(loaded, [str(c) for c in frame["customer_id"]])
        out: list[dict] = []
        logged: list[ApiDecision] = []
        now = pd.Timestamp.now(tz="UTC")
        # Customers are decided as of their own features' time: group rows by it (in order of appearance).
        groups: dict[pd.Timestamp, list[int]] = {}
        for i, stamp in enumerate(frame["event_timestamp"]):
            groups.setdefault(stamp, []).append(i)
        for when, positions in groups.items():
            rows = frame if len(groups) == 1 else frame.take(np.asarray(positions))
            answers = score_and_decide(self.catalogue, loaded.champions, rows, self.contractual,
                                       data, pd.Timestamp(when), context, max_actions)
            for answer in answers:
                first = answer.recommendations[0]
                logged.append(ApiDecision(new_decision_id(), str(answer.scores["customer_id"]),
                                          [r.action for r in answer.recommendations], first.expected_value,
                                          first.reasons, now, pd.Timestamp(when), loaded.champions.versions))
                out.append(as_response(answer, pd.Timestamp(when), loaded.champions, logged[-1].decision_id))
        try:
            self.journal.add_decisions(logged)
        except JournalUnavailable as err:  # an answer matters more than its log line: said, not failed
            LOG.warning("%s %d decision(s) not logged.", err, len(logged))
        order = {c: i for i, c in enumerate(frame["customer_id"])}
        return sorted(out, key=lambda r: order[r["customer_id"]])

    def feedback(self, decision_id: str, response: str, action: str | None = None) -> None:
        decision_log.record_feedback(self.workspace, decision_id, response, action=action)


def feature_frame(values: dict[str, list], features: list[str], rows: np.ndarray,
                  kinds: dict[str, str]) -> pd.DataFrame:
    """The given rows of feature lists (the online store's answer, or what a caller sent)
    with the batch's dtypes: numbers as float64 (missing: NaN), text as objects."""
    return feature_columns(values, features, rows, kinds).to_frame()


def feature_columns(values: dict[str, list], features: list[str], rows: np.ndarray,
                    kinds: dict[str, str]) -> Columns:
    """`feature_frame` as numpy columns (what the API scores: `training.models.Columns`)."""
    return Columns({f: np.asarray(values[f], dtype=float if kinds.get(f) == FLOAT else object)[rows]
                    for f in features}, len(rows))


def as_response(answer: CustomerAnswer, when: pd.Timestamp, champions: Champions, decision_id: str) -> dict:
    s = answer.scores
    probabilities = s["stage_probabilities"]
    return {
        "customer_id": s["customer_id"],
        "churn_probability": _number(s["churn_probability"]),
        "upsell_probability": _number(s["upsell_probability"]),
        "stage": s["stage"],
        "predicted_stage": s["predicted_stage"],
        "stage_probabilities": json.loads(probabilities) if probabilities else None,
        "clv": _number(s["clv"]),
        "in_population": answer.in_population,
        "actions": [r.__dict__ for r in answer.recommendations],
        "decision_id": decision_id,
        "feature_timestamp": when.isoformat(),
        "model_versions": champions.versions,
    }


def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def poll(runtime: Runtime, every_seconds: float, stop: threading.Event) -> None:
    """Refresh every `every_seconds` until stopped (the service's background thread)."""
    while not stop.wait(every_seconds):
        try:
            runtime.refresh()
        except Exception as err:  # noqa: BLE001 - a registry hiccup must not kill the poller; retried next time
            LOG.warning("clm: could not check the registry for new champions (%s); retrying in %.0f s", err,
                        every_seconds)
