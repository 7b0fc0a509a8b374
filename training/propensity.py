"""How a targeted campaign chose its customers, estimated from their features, with an
overlap check.

A campaign logged without its assignment probabilities (`clm ingest campaigns --targeted`)
chose its customers by a rule clm does not know. Within each campaign month, a classifier
of the arm a customer got (each action, and the control) given the customer's features at
the month's start estimates each customer's probability of every arm; it is cross-fitted
(each customer's probabilities come from a model that never saw that customer), so a
customer is not judged by a model that learnt its own assignment.

The effect of an action can be learned only where customers like those who got it were
also held out, and the other way round. A customer is comparable for action a when both
its estimated probability of a and of the control are at least MIN_PROPENSITY. An action
whose customers (those who got it and the control group of its months) are comparable
less than MIN_OVERLAP of the time has no support: the targeting all but decided who got
it from the features, so what it changed cannot be told apart from whom it chose. Its
rows are left out, it is never recommended, and the reason is said with the figures.
The other rows get their arm's estimated probability, clipped at MIN_PROPENSITY (so no
row weighs more than 1 / MIN_PROPENSITY).

Rows whose propensity was given (logged, or a randomised test's arm share) are untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from clm.domain import NO_ACTION
from training.frames import customer_folds
from training.models import SEED, categories_of, prepare_features

MIN_PROPENSITY = 0.05
MIN_OVERLAP = 0.5
FOLDS = 5
ASSIGNMENT_PARAMS = dict(
    n_estimators=150, learning_rate=0.05, num_leaves=7, min_child_samples=50, reg_lambda=5.0, subsample=0.8,
    subsample_freq=1, colsample_bytree=0.8, random_state=SEED, n_jobs=2, verbose=-1, deterministic=True,
    force_row_wise=True,
)


@dataclass(frozen=True)
class Assignment:
    """A targeted campaign's estimated assignment: the rows kept, with every propensity
    filled in, and each action left out for want of support, with why."""

    rows: pd.DataFrame
    unsupported: dict[str, str]
    estimated: int  # rows whose propensity was estimated


def arm_probabilities(rows: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Each row's cross-fitted probability of every arm its rows took (columns: the arms),
    from a classifier of the arm on the features; folds by customer."""
    arms = sorted(set(rows["action"].astype(str)))
    out = pd.DataFrame(0.0, index=rows.index, columns=arms)
    if len(arms) == 1:
        out[arms[0]] = 1.0
        return out
    categories = categories_of(rows, features)
    x = prepare_features(rows, features, categories)
    y = rows["action"].astype(str).to_numpy()
    fold = customer_folds(rows, FOLDS, "propensity cross-fitting")
    for k in range(FOLDS):
        here, rest = fold == k, fold != k
        if not here.any():
            continue
        shares = pd.Series(y[rest]).value_counts(normalize=True).reindex(arms, fill_value=0.0)
        if (shares > 0).sum() < 2:  # a tiny month: the fold's rows get the other folds' arm shares
            out.loc[rows.index[here], arms] = np.tile(shares.to_numpy(), (int(here.sum()), 1))
            continue
        model = lgb.LGBMClassifier(**ASSIGNMENT_PARAMS)  # type: ignore[arg-type]
        model.fit(x[rest], y[rest])
        probabilities = pd.DataFrame(model.predict_proba(x[here]), columns=list(model.classes_))
        # An arm the other folds never took (rare): its share there, 0 (too rare to overlap anyway).
        out.loc[rows.index[here], arms] = probabilities.reindex(columns=arms, fill_value=0.0).to_numpy()
    return out


def estimate_assignment(rows: pd.DataFrame, features: list[str]) -> Assignment:
    """rows: decision rows (event_timestamp = the campaign month's cutoff, action,
    propensity: NaN where unknown) with their features. Returns them with each unknown
    propensity estimated (`arm_probabilities`, month by month), the rows of an action
    without support left out (module docstring)."""
    rows = rows.reset_index(drop=True)
    unknown = rows["propensity"].isna().to_numpy()
    if not unknown.any():
        return Assignment(rows, {}, 0)
    taken = np.full(len(rows), np.nan)
    # action -> per-row probabilities of it and of none, over its months' rows
    own_arm: dict[str, list[np.ndarray]] = {}
    control_arm: dict[str, list[np.ndarray]] = {}
    for _, month in rows[unknown].groupby("event_timestamp", sort=True):
        probabilities = arm_probabilities(month, features)
        at = rows.index.get_indexer(month.index)
        taken[at] = probabilities.to_numpy()[np.arange(len(month)),
                                             probabilities.columns.get_indexer(month["action"].astype(str))]
        none = probabilities[NO_ACTION] if NO_ACTION in probabilities else pd.Series(0.0, index=month.index)
        for action in probabilities.columns.drop(NO_ACTION, errors="ignore"):
            among = month["action"].isin([action, NO_ACTION]).to_numpy()
            own_arm.setdefault(action, []).append(probabilities[action].to_numpy()[among])
            control_arm.setdefault(action, []).append(none.to_numpy()[among])
    unsupported = {}
    for action in sorted(own_arm):
        e_action, e_none = np.concatenate(own_arm[action]), np.concatenate(control_arm[action])
        share = float(np.mean((e_action >= MIN_PROPENSITY) & (e_none >= MIN_PROPENSITY)))
        if share < MIN_OVERLAP:
            unsupported[action] = (
                f"its campaign chose its customers almost without chance: {share:.0%} of the {len(e_action):,} who "
                f"got it or were held out had at least a {MIN_PROPENSITY:.0%} chance of both, estimated from their "
                f"features ({MIN_OVERLAP:.0%} needed), so what it changed cannot be told apart from whom it chose; "
                "give each row's assignment probability (--col propensity=COLUMN) or test it at random "
                "(--randomised)")
    filled = rows.assign(propensity=np.where(unknown, np.clip(taken, MIN_PROPENSITY, 1.0), rows["propensity"]))
    dropped = unknown & rows["action"].isin(list(unsupported)).to_numpy()
    kept = filled[~dropped].reset_index(drop=True)
    return Assignment(kept, unsupported, int(unknown[~dropped].sum()))
