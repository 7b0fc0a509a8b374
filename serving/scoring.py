"""Score and decide: the one implementation behind the real-time API and the nightly batch.

Three steps, each a function that both callers use:

1. `score_rows`: from customers' features (one row per customer at one instant), the
   scores (churn, upsell, CLV, the predicted stage and its probabilities), the stage the
   rules give them, who is in the model population, and the uplift champion's effects;
2. `decide_rows`: the decision funnel (`serving.decide`) for the customers in the
   population: consents, contact history, thresholds, value, and the selection (per
   customer, or under a budget and capacities across everyone given);
3. `explain`: reasons in words for (customer, action) pairs: the value and its parts, and
   the drivers of the score the action answers to.

The API runs the three on the rows of a request (`score_and_decide`); the nightly batch runs
step 1 chunk by chunk, step 2 once over the whole base (so that the budget is allocated
across it), and step 3 for the customers who get an action. The rows are a DataFrame (the
batch) or `training.models.Columns`, numpy columns (the API: a request's few rows, where
pandas' cost per operation was most of the answer's time); the same code reads both, and
what it returns comes in the kind it was given.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from clm.domain import CHANNEL_CONSENT_COLUMN, NO_ACTION, Table
from clm.stages import stage_ids
from clm.workspace import Workspace
from decisions import log as decision_log
from decisions.catalogue import Catalogue, Context
from decisions.population import POPULATION_FEATURES, in_decision_population, in_population
from decisions.value import plan_prices
from serving.decide import Decisions, decide
from serving.eligibility import CUSTOMER_COLUMNS, Contacts
from serving.contributions import path_contributions
from serving.reasons import top_drivers, value_sentence
from training.models import Columns, Rows, TrainedModel, column
from training.uplift import UpliftModel

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

MODELS = ("churn", "upsell", "stage", "clv")
SCALAR_SCORES = {"churn": "churn_probability", "upsell": "upsell_probability", "clv": "clv"}
SCORE_COLUMNS = ("customer_id", "churn_probability", "upsell_probability", "stage", "predicted_stage",
                 "stage_probabilities", "clv")
CONSENT_COLUMNS = tuple(c for c in CHANNEL_CONSENT_COLUMN.values() if c)
# What the funnel and the value rule read about a customer (besides the effects).
FUNNEL_COLUMNS = (*CUSTOMER_COLUMNS, "price", "monetary_365d")
# Which score an action answers to, by its target: its reasons are that score's drivers.
DRIVER_MODEL = {"retain": "churn", "activate": "churn", "win_back": "churn", "upgrade": "upsell", "refer": "upsell"}


# ------------------------------------------------------------------ what answers
@dataclass(frozen=True)
class Champions:
    """The models that answer, and their versions (None: no champion for the workspace)."""

    models: dict[str, TrainedModel]  # of MODELS, those with a champion
    uplift: UpliftModel | None
    versions: dict[str, str | None]  # every model of MODELS and "uplift"

    def versions_json(self) -> str:
        return json.dumps(self.versions, sort_keys=True)


def load_champions(client: MlflowClient, check_requirements: bool = True) -> Champions:
    """The registry's champions (alias `champion`), loaded once. `check_requirements`:
    MLflow compares each model's recorded packages with those installed (a warning on a
    mismatch, 0.2 s a model); the API's server skips it to be ready sooner (the batch and
    notebooks, which load the same models, still warn)."""
    from training import (
        registry,  # MLflow, heavy: not for Spark's workers, which import this module
    )

    versions = registry.champion_versions(client)
    models = {m: registry.load_version(client, m, v, check_requirements) for m in MODELS if (v := versions[m]) is not None}
    # The registered "uplift" model's versions are UpliftModels (load_version is typed for the others).
    uplift = (cast(UpliftModel, registry.load_version(client, "uplift", versions["uplift"], check_requirements))
              if versions["uplift"] else None)
    for name in sorted(set(DRIVER_MODEL.values()) & set(models)):  # the reasons' leaf credits (12-23 ms a
        booster = getattr(models[name].estimator, "booster_", None)  # model) made here, not on the first request
        if booster is not None:
            path_contributions(booster)
    return Champions(models, uplift, versions)


@dataclass
class ContactHistory:
    """Past contacts (not none), sorted by customer: one customer's rows found by bisection."""

    frame: pd.DataFrame  # customer_id, action, event_time
    contacts: Contacts = field(init=False)  # the same, as arrays

    def __post_init__(self) -> None:
        self.contacts = Contacts.of(self.frame)

    @classmethod
    def of(cls, history: pd.DataFrame) -> "ContactHistory":
        return cls(history.sort_values(["customer_id", "event_time"], kind="stable").reset_index(drop=True))

    def of_customers(self, ids: np.ndarray) -> Contacts:
        keys = self.contacts.customer_id
        if len(ids) > 64:
            return self.contacts.take(pd.Series(keys, dtype=object).isin(ids).to_numpy())
        parts = [np.arange(np.searchsorted(keys, c, "left"), np.searchsorted(keys, c, "right")) for c in ids]
        return self.contacts.take(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))


@dataclass
class DecisionData:
    """What deciding reads beside the features: consents, the contact history before the
    decision time, and the plan price ladder."""

    consents: pd.DataFrame  # indexed by customer_id: CONSENT_COLUMNS
    history: ContactHistory
    plan_prices: np.ndarray


def consent_changes(workspace: Workspace, with_sent: bool = True) -> pd.DataFrame:
    """Every consent change known: the consents table's and (with_sent) those sent to the API
    (the journal's, at the time they came): customer_id, event_time, channel, granted."""
    frames = []
    if workspace.table_path(Table.CONSENTS).exists():
        frames.append(workspace.read_table(Table.CONSENTS, columns=["customer_id", "event_time", "channel", "granted"]))
    sent = decision_log.journal(workspace).consents() if with_sent else pd.DataFrame()
    if len(sent):
        frames.append(sent.rename(columns={"reported_at": "event_time"})[["customer_id", "event_time", "channel",
                                                                         "granted"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def with_changes(consents: pd.DataFrame, latest: pd.Series) -> pd.DataFrame:
    """consents (indexed by customer_id) with each (customer_id, channel)'s latest change
    applied, for the customers it holds."""
    for channel, consent_column in CHANNEL_CONSENT_COLUMN.items():
        if consent_column is not None and channel in latest.index.get_level_values("channel"):
            changed = latest.xs(channel, level="channel")
            known = changed.index.intersection(consents.index)
            consents.loc[known, consent_column] = changed.loc[known].to_numpy(dtype=bool)
    return consents


def consents_of(workspace: Workspace, before: pd.Timestamp | None = None) -> pd.DataFrame:
    """Each customer's channel consents: the customers table's, overridden by the latest
    change for that channel (`consent_changes`; before `before`, when given: a backtest's
    date, which reads the consents table only, not today's API traffic. Real decisions read
    every change known). None recorded: no consent."""
    if not workspace.table_path(Table.CUSTOMERS).exists():
        return pd.DataFrame({c: pd.Series(dtype=bool) for c in CONSENT_COLUMNS}, index=pd.Index([], name="customer_id"))
    frame = workspace.read_table(Table.CUSTOMERS, columns=["customer_id", *CONSENT_COLUMNS]).set_index("customer_id")
    log = consent_changes(workspace, with_sent=before is None)
    if len(log):
        log = log.sort_values("event_time", kind="stable")
        if before is not None:  # before a pair's first change, the opposite of what that change made it
            first = log.groupby(["customer_id", "channel"]).first()
            earlier = ~first.granted[first.event_time >= before]
            latest = log[log.event_time < before].groupby(["customer_id", "channel"]).granted.last()
            latest = pd.concat([latest, earlier[~earlier.index.isin(latest.index)]])
        else:
            latest = log.groupby(["customer_id", "channel"]).granted.last()
        frame = with_changes(frame, latest)
    return frame


def contact_history(workspace: Workspace, before: pd.Timestamp, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Contacts (not none) before a date, from `since` on when given: the logged ones and
    clm's own decisions (only the columns and rows asked for are read)."""
    frames = []
    if workspace.table_path(Table.ACTIONS).exists():
        logged = pq.read_table(workspace.table_path(Table.ACTIONS), columns=["customer_id", "action", "event_time"],
                               filters=[("action", "!=", NO_ACTION)]).to_pandas()
        frames.append(logged[(logged.event_time < before) & (logged.event_time >= since if since is not None else True)])
    own = decision_log.batch_contacts(workspace, since, before)
    if len(own):
        frames.append(own.rename(columns={"decided_at": "event_time"}))
    if not frames:
        return pd.DataFrame({"customer_id": pd.Series(dtype=str), "action": pd.Series(dtype=str),
                             "event_time": pd.Series(dtype="datetime64[ns, UTC]")})
    return pd.concat(frames, ignore_index=True)


def load_decision_data(workspace: Workspace, before: pd.Timestamp, lookback_days: int | None = None,
                       real: bool = False) -> DecisionData:
    """Consents, contact history and plan prices for decisions at `before`. lookback_days:
    how far back the contact rules read (`Catalogue.lookback_days`; None: the whole history):
    only those contacts are held. real: decisions that will contact people (the batch): every
    consent change known counts, also one made after `before` (a withdrawal counts at once);
    else (a backtest's date) those before it."""
    since = before - pd.Timedelta(days=lookback_days) if lookback_days is not None else None
    return DecisionData(consents_of(workspace, None if real else before),
                        ContactHistory.of(contact_history(workspace, before, since)), plan_prices(workspace))


def consent_columns(ids: np.ndarray, consents: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each customer's consent columns, as bools (unknown customer: no consent)."""
    at = consents.index.get_indexer(ids)
    known = at >= 0
    out = {}
    for c in CONSENT_COLUMNS:
        found = consents[c].to_numpy()[np.where(known, at, 0)] if len(consents) else np.zeros(len(ids), dtype=bool)
        flags = found if found.dtype == bool else pd.Series(found, dtype=object).fillna(False).to_numpy(dtype=bool)
        out[c] = known & flags
    return out


def with_consents(customers: pd.DataFrame, consents: pd.DataFrame) -> pd.DataFrame:
    """customers with their consent columns (unknown customer: no consent)."""
    return customers.drop(columns=list(CONSENT_COLUMNS), errors="ignore").assign(
        **consent_columns(customers["customer_id"].to_numpy(), consents))


def _frame_of(rows: Rows, names: Sequence[str]) -> pd.DataFrame:
    """rows as a DataFrame for a rule that reads one (`Columns`: those of names it holds)."""
    if not isinstance(rows, Columns):
        return rows
    return pd.DataFrame({c: rows[c] for c in names if c in rows}, index=pd.RangeIndex(len(rows)))


def _take(rows: Rows, which: np.ndarray) -> Rows:
    """Some rows (a mask or positions), numbered from 0."""
    if isinstance(rows, Columns):
        return rows.take(which)
    return (rows[which] if which.dtype == bool else rows.iloc[which]).reset_index(drop=True)


def _like(rows: Rows, columns: dict[str, Any], n: int) -> Rows:
    """columns as the kind of rows: a DataFrame, or `Columns`."""
    return Columns(columns, n) if isinstance(rows, Columns) else pd.DataFrame(columns, index=pd.RangeIndex(n))


# ------------------------------------------------------------------ 1. scores
def score_frame(
    models: dict[str, TrainedModel], frame: pd.DataFrame, live: np.ndarray, contractual: bool,
) -> pd.DataFrame:
    """The scores of every row of `frame`: for rows in the population (`live`), the models'
    scores; elsewhere nulls, and the stage the rules give (a cancelled contract is churned)."""
    return pd.DataFrame(score_columns(models, frame, live, contractual), index=pd.RangeIndex(len(frame)))


def score_columns(models: dict[str, TrainedModel], frame: Rows, live: np.ndarray,
                  contractual: bool) -> dict[str, np.ndarray]:
    """`score_frame`'s columns (SCORE_COLUMNS, in order) for a DataFrame or `Columns`."""
    n = len(frame)
    live = np.asarray(live, dtype=bool)
    stage = np.asarray(stage_ids(frame, contractual), dtype=object)
    rows = _take(frame, live) if not live.all() else frame
    scores: dict[str, np.ndarray] = {}
    for model, name in SCALAR_SCORES.items():
        scores[name] = np.full(n, np.nan)
        if model in models and len(rows):
            scores[name][live] = models[model].predict(rows)
    predicted = stage.copy()
    probabilities = np.full(n, None, dtype=object)
    stage_model = models.get("stage")
    if stage_model is None:
        predicted[live] = None
    elif len(rows):
        proba = stage_model.predict(rows)
        classes = np.asarray(stage_model.classes, dtype=object)
        predicted[live] = classes[np.argmax(proba, axis=1)]
        probabilities[live] = [json.dumps(dict(zip(stage_model.classes, np.round(row, 6).tolist()))) for row in proba]
    return {"customer_id": column(frame, "customer_id"), "churn_probability": scores["churn_probability"],
            "upsell_probability": scores["upsell_probability"], "stage": stage, "predicted_stage": predicted,
            "stage_probabilities": probabilities, "clv": scores["clv"]}


@dataclass
class Scored:
    """Step 1's outcome for a frame of customers.

    scores: SCORE_COLUMNS per row; live: rows in the model population (scored); decided:
    rows decided for (`in_decision_population`: the live ones, and a shop's customers who
    never bought); funnel: the decided rows' FUNNEL_COLUMNS (and consents; scores null
    outside the model population); churn_change / upgrade_change: the uplift champion's
    effects on the decided rows, (decided rows, the catalogue's contact actions), None
    without one. scores and funnel: DataFrames, or `Columns` for `Columns` given."""

    scores: Rows
    live: np.ndarray
    decided: np.ndarray
    funnel: Rows
    churn_change: np.ndarray | None
    upgrade_change: np.ndarray | None

    @staticmethod
    def concat(parts: list["Scored"]) -> "Scored":
        """One Scored of several chunks' (scores left out: the batch writes them per chunk)."""
        with_effects = all(p.churn_change is not None for p in parts)
        return Scored(
            pd.DataFrame(), np.concatenate([p.live for p in parts]), np.concatenate([p.decided for p in parts]),
            pd.concat([p.funnel for p in parts], ignore_index=True),
            np.concatenate([p.churn_change for p in parts]) if with_effects else None,
            np.concatenate([p.upgrade_change for p in parts]) if with_effects else None,
        )


def score_rows(champions: Champions, frame: Rows, contractual: bool, consents: pd.DataFrame,
               actions: Sequence[str]) -> Scored:
    """Scores and effects for every row of frame (customers' features at one instant: a
    DataFrame, or `Columns`); actions: the catalogue's contact action ids, the effects'
    column order."""
    population = _frame_of(frame, POPULATION_FEATURES)
    live = in_population(population, contractual)
    scores = score_columns(champions.models, frame, live, contractual)
    decided = np.asarray(in_decision_population(population, contractual), dtype=bool)
    rows = _take(frame, decided) if not decided.all() else frame
    n = len(rows)
    funnel: dict[str, Any] = {}
    for c in FUNNEL_COLUMNS:
        if c in ("stage", "churn_probability", "upsell_probability"):
            funnel[c] = scores[c][decided]
        elif c not in CONSENT_COLUMNS:  # a DataFrame's columns keep their dtypes
            funnel[c] = (rows[c] if isinstance(rows, Columns) else rows[c].reset_index(drop=True)) if c in rows \
                else np.full(n, np.nan)
    funnel.update(consent_columns(column(rows, "customer_id"), consents))
    out = Scored(_like(frame, scores, len(frame)), live, decided, _like(frame, funnel, n), None, None)
    if champions.uplift is not None and n:
        effects = champions.uplift.effects(rows, actions)
        out.churn_change, out.upgrade_change = effects["churn"], effects["upgrade"]
    return out


# ------------------------------------------------------------------ 2. decisions
def decide_rows(catalogue: Catalogue, scored: Scored, data: DecisionData, now: pd.Timestamp,
                context: Context | None = None, budget: float | None = None,
                per_customer: bool = False) -> Decisions | None:
    """The funnel for the customers decided for (`Scored.decided`); None without an uplift
    champion. per_customer: each on their own (the API: `serving.decide.decide`)."""
    if scored.churn_change is None or scored.upgrade_change is None:
        return None
    history = data.history.of_customers(column(scored.funnel, "customer_id"))
    history = history.take(history.event_ns < now.value)  # contacts before the decision, as the batch reads them
    return decide(catalogue, scored.funnel, scored.churn_change, scored.upgrade_change, history, now,
                  data.plan_prices, context=context, budget=budget, per_customer=per_customer)


# ------------------------------------------------------------------ 3. reasons
def explain(catalogue: Catalogue, champions: Champions, features: Rows, decided: Decisions,
            pairs: list[tuple[int, int]]) -> list[list[str]]:
    """Reasons for each (row, action index) pair: the value sentence, then the top drivers
    of the score the action answers to. features: the customers' features, indexed by
    their row in `decided` (a pair's first number)."""
    p = decided.parts
    targets = [e.target for e in catalogue.contact_actions]
    sentences = [value_sentence(decided.actions[j], targets[j], p.total[i, j], p.retention[i, j], p.upgrade[i, j],
                                p.cost[i, j]) for i, j in pairs]
    return with_drivers(catalogue, champions, features, pairs, sentences)


def with_drivers(catalogue: Catalogue, champions: Champions, features: Rows, pairs: list[tuple[int, int]],
                 sentences: list[str]) -> list[list[str]]:
    """Each pair's value sentence followed by the top drivers of the score its action
    answers to (`DRIVER_MODEL`). features: indexed by the pairs' first numbers."""
    entries = catalogue.contact_actions
    wanted: dict[str, set[int]] = {}
    for i, j in pairs:
        model = DRIVER_MODEL.get(entries[j].target)
        if model in champions.models:
            wanted.setdefault(model, set()).add(i)
    drivers: dict[tuple[str, int], list[str]] = {}
    for model, rows in wanted.items():
        ordered = sorted(rows)
        of_rows = features.take(np.asarray(ordered)) if isinstance(features, Columns) else features.loc[ordered]
        for i, found in zip(ordered, top_drivers(champions.models[model], of_rows)):
            drivers[(model, i)] = found
    return [[sentence, *drivers.get((DRIVER_MODEL.get(entries[j].target, ""), i), [])]
            for (i, j), sentence in zip(pairs, sentences)]


# ------------------------------------------------------------------ the API's call
@dataclass
class Recommendation:
    action: str
    expected_value: float
    retention_value: float
    upgrade_value: float
    cost: float
    score: float  # value x weights, what ranks the actions
    reasons: list[str]


@dataclass
class CustomerAnswer:
    """One customer's scores and ranked recommendations (`none` with its reason when no
    action pays or none is allowed)."""

    scores: dict[str, Any]  # a row of SCORE_COLUMNS, as pandas gives it (to_dict)
    in_population: bool
    recommendations: list[Recommendation]


# Why a customer is not decided for (only a contractual business leaves anyone out).
NOT_DECIDED_FOR = "no live contract: nothing to retain or upgrade (a win-back is decided for live customers only)"
NO_UPLIFT = "no uplift model: clm cannot estimate what an action would change (run `clm train`)"


def _nothing(reason: str) -> Recommendation:
    return Recommendation("none", 0.0, 0.0, 0.0, 0.0, 0.0, [reason])


def score_and_decide(catalogue: Catalogue, champions: Champions, frame: Rows, contractual: bool,
                     data: DecisionData, now: pd.Timestamp, context: Context | None = None,
                     max_actions: int = 3) -> list[CustomerAnswer]:
    """Steps 1-3 for the rows of frame, each customer decided on their own (no budget):
    up to max_actions recommendations per customer, best first."""
    scored = score_rows(champions, frame, contractual, data.consents, catalogue.contact_ids)
    decided = decide_rows(catalogue, scored, data, now, context, per_customer=True)
    decided_rows = np.flatnonzero(scored.decided)
    features = _take(frame, decided_rows)
    ranked: dict[int, list[tuple[int, float]]] = {}
    if decided is not None:
        index = {a: j for j, a in enumerate(decided.actions)}
        for k in range(len(decided_rows)):
            ranked[k] = [(index[a], s) for a, s in decided.ranked(k, max_actions)]
    pairs = [(i, j) for i, picks in ranked.items() for j, _ in picks]
    reasons = iter(explain(catalogue, champions, features, decided, pairs)) if decided is not None else iter(())
    answers = []
    position: dict[int | np.integer, int] = {row: i for i, row in enumerate(decided_rows)}
    records = _records(scored.scores)
    for row, record in enumerate(records):
        i = position.get(row)
        recommendations = []
        if i is not None and decided is not None:
            p = decided.parts
            for j, s in ranked[i]:
                recommendations.append(Recommendation(
                    decided.actions[j], float(p.total[i, j]), float(p.retention[i, j]), float(p.upgrade[i, j]),
                    float(p.cost[i, j]), float(s), next(reasons)))
            if not recommendations:
                recommendations.append(_nothing(str(decided.why[i])))
        elif i is None:
            recommendations.append(_nothing(NOT_DECIDED_FOR))
        else:
            recommendations.append(_nothing(NO_UPLIFT))
        answers.append(CustomerAnswer(record, bool(scored.live[row]), recommendations))
    return answers


def _records(scores: Rows) -> list[dict[str, Any]]:
    """A row of scores per customer as Python values, as `DataFrame.to_dict("records")` gives them."""
    if not isinstance(scores, Columns):
        return cast(list[dict[str, Any]], scores.to_dict("records"))
    values = {name: scores[name].tolist() for name in scores.columns}
    return [{name: values[name][i] for name in values} for i in range(len(scores))]
