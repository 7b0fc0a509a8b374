"""Uplift: what each action changes, per customer, learned from the logged decisions.

The logged policy decides at cutoffs (a month's first day) with known, randomised
propensities; `none` is the control group. A decision row is (customer, cutoff T, action,
propensity) for a decision made in [T, T + 1 day); its features are the Feast features at T
(the same snapshots and point-in-time retrieval as every model) and its outcomes the churn
and upsell labels of [T, T + H) (`training.labels`).

Three learners on LightGBM, all using the logged propensities:

- T-learner: one outcome model per arm (each action, and none), fitted with inverse
  propensity weights 1/e so that each arm's sample stands for the whole base; the effect
  of action a is mu_a(x) - mu_none(x).
- Pooled learner (strength shared across the arms): per outcome one baseline model of
  P(outcome | x) learned from every decision, which each arm (the control too) corrects in
  log-odds from its own rows; an action logged a few hundred times learns its shift, not
  the base rate.
- DR-learner (Kennedy, 2023): cross-fitted arm models give, on every training row, the
  doubly-robust pseudo-outcome
      phi_a = mu_a - mu_none + 1[T=a] (Y - mu_a) / e - 1[T=none] (Y - mu_none) / e
  (e is the logged propensity of the action taken: only the taken arm's is needed), and a
  LightGBM regression of phi_a on x is the effect.

Which one is registered: the DR-learner (its error bound is the better one, Kennedy 2023,
and it measured better against the true effects: benchmarks/policy.py), unless another is
clearly better on the validation window: a lower squared error against the
inverse-propensity pseudo-outcomes of the value rule, by more than two standard errors
(`clearly_better`; one window of pseudo-outcomes is noisy, and a small difference is a
coin toss). The test window judges the registered one (`uplift_r2`, value Qini curves).
An action with too few logged decisions gets no model and a zero effect, so it is never
recommended (no evidence, no action). The actions are whatever the logged decisions name:
the business's own ids (`voucher_10`), learned from its campaigns; every effect matrix is
asked for in the caller's order of ids (a catalogue's), an id the model never saw having a
zero effect.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

from clm.domain import NO_ACTION, Table
from clm.workspace import Workspace
from decisions.log import read_decisions
from decisions.value import CustomerValues, expected_value
from training.frames import KEYS, customer_folds
from training.models import (
    SEED,
    categories_of,
    lightgbm_predict,
    prepare_features,
    prepare_matrix,
)

# Effect name -> label column (`training.labels`).
OUTCOMES = {"churn": "churn", "upgrade": "upsell"}
MIN_ARM_ROWS = 50  # logged decisions of an action (and of the control) needed to model it
MIN_ARM_POSITIVES = 5
MIN_GATE_DECISIONS = 200  # held-out decisions of an action (and of the control) before its own gate judges it
FOLDS = 2
QINI_POINTS = 20

ARM_PARAMS: dict[str, Any] = dict(
    learning_rate=0.05, num_leaves=15, min_child_samples=40, subsample=0.8, subsample_freq=1,
    colsample_bytree=0.8, random_state=SEED, n_jobs=2, verbose=-1, deterministic=True, force_row_wise=True,
)
ARM_MAX_TREES = 400
EFFECT_PARAMS = dict(ARM_PARAMS, learning_rate=0.03, num_leaves=7, min_child_samples=200, reg_lambda=10.0)
EFFECT_MAX_TREES = 300
# The pooled learner's corrections of its shared baseline, one per arm: small trees on large leaves.
CORRECTION_PARAMS = dict(ARM_PARAMS, learning_rate=0.1, num_leaves=4, min_child_samples=100, reg_lambda=10.0)
CORRECTION_MAX_TREES = 200


def decision_rows(workspace: Workspace, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    """(customer_id, event_timestamp = the cutoff, action, propensity): for each cutoff T (a
    month's first day), each customer's first logged decision of the business's campaigns
    (the raw `actions` table) in T's month, [T, next month's first day), and of clm's own
    decision log (`decisions.log`) in [T, T + 1 day), the campaigns first where both hold
    one. A campaign on the 14th is learned with the features as of the 1st (known before
    it) and the outcomes of [T, T + H), which both arms share."""
    sources = []
    if workspace.table_path(Table.ACTIONS).exists():
        campaigns = workspace.read_table(Table.ACTIONS, columns=["customer_id", "event_time", "action", "propensity"])
        sources.append((campaigns, "month"))
    own = read_decisions(workspace)
    if len(own):
        sources.append((own.rename(columns={"decided_at": "event_time"})[["customer_id", "event_time", "action",
                                                                          "propensity"]], "day"))
    frames = []
    for cutoff in cutoffs:
        for actions, span in sources:
            until = cutoff + (pd.offsets.MonthBegin(1) if span == "month" else pd.Timedelta(days=1))
            day = actions[(actions.event_time >= cutoff) & (actions.event_time < until)]
            frames.append(day.sort_values(["customer_id", "event_time"], kind="stable")
                          .assign(event_timestamp=cutoff)[[*KEYS, "action", "propensity"]])
    if not frames:
        return pd.DataFrame(columns=[*KEYS, "action", "propensity"])
    return pd.concat(frames, ignore_index=True).drop_duplicates(KEYS, keep="first").reset_index(drop=True)


@dataclass
class UpliftModel:
    """Per customer, each contact action's change of the churn and upgrade probabilities
    within the horizon. `effects(frame, actions)[outcome]` is (customers, len(actions)),
    columns in the order of the ids asked for; an action without a model has a zero effect."""

    learner: str
    features: list[str]
    categories: dict[str, list[str]]
    outcomes: list[str]
    # T-learner: outcome -> arm -> classifier; DR-learner: outcome -> action -> regressor.
    estimators: dict[str, dict[str, lgb.LGBMModel]] = field(default_factory=dict)
    horizon_days: int = 90
    # outcome -> the control arm's classifier (P(outcome) with no contact), for both learners.
    control: dict[str, lgb.LGBMModel] = field(default_factory=dict)
    # The latest cutoff whose decisions shaped the model (its validation window's): its
    # policy can be judged off-policy only on later decisions.
    fitted_through: pd.Timestamp | None = None
    # Logged actions left without a model (too little support), and why: never recommended.
    unsupported: dict[str, str] = field(default_factory=dict)
    # The latest cutoff whose decisions judged it for the gate (its test window's).
    judged_through: pd.Timestamp | None = None
    # Pooled learner: outcome -> the shared baseline classifier (every decision, whatever was done),
    # which each arm's classifier corrects in log-odds.
    baseline: dict[str, lgb.LGBMModel] = field(default_factory=dict)
    # Pooled learner: outcome -> arm -> its level against the baseline, in log-odds (the correction's trees add to it).
    shifts: dict[str, dict[str, float]] = field(default_factory=dict)

    def __setstate__(self, state: dict) -> None:
        """Versions registered before a field existed load with its default."""
        self.__dict__.update({"control": {}, "fitted_through": None, "unsupported": {}, "judged_through": None,
                              "baseline": {}, "shifts": {}, **state})

    def in_sample(self, date: pd.Timestamp) -> str:
        """Why a policy judged at `date` would flatter this model ("" when it would not): the
        model learned from that date's decisions and outcomes, or was chosen and promoted on
        them."""
        learned, judged = self.fitted_through, self.judged_through or self.fitted_through
        if judged is None or date > judged:
            return ""
        if learned is not None and date <= learned:
            return (f"the uplift model learned from the decisions through {learned:%Y-%m-%d} (and their outcomes): "
                    f"judged at {date:%Y-%m-%d} it is judged on its own training data")
        return (f"the uplift model was chosen and promoted on the decisions of {judged:%Y-%m-%d}: judged at "
                f"{date:%Y-%m-%d} it is judged on the window it was selected on")

    @property
    def actions(self) -> list[str]:
        """The contact actions with a model for at least one outcome, by id."""
        return sorted({a for o in self.outcomes for a in self.estimators.get(o, {}) if a != NO_ACTION})

    def effects(self, frame: pd.DataFrame, actions: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Per outcome, (rows, actions) changes of its probability; actions: the ids asked
        for (default: the model's own), an id it has no model for changing nothing."""
        actions = self.actions if actions is None else list(actions)
        x = prepare_matrix(frame, self.features, self.categories)
        out = {}
        for outcome in OUTCOMES:
            effect = np.zeros((len(frame), len(actions)))
            models = self.estimators.get(outcome, {})
            if self.learner in ("t_learner", "pooled") and NO_ACTION in models:
                control = self.arm_probability(outcome, NO_ACTION, x)
                for j, action in enumerate(actions):
                    if action in models and action != NO_ACTION:
                        effect[:, j] = self.arm_probability(outcome, action, x) - control
            elif self.learner == "dr_learner":
                for j, action in enumerate(actions):
                    if action in models:
                        effect[:, j] = np.clip(_predict(models[action], x), -1.0, 1.0)
            out[outcome] = effect
        return out

    def arm_probability(self, outcome: str, arm: str, x: np.ndarray) -> np.ndarray:
        """P(outcome | x, arm) from an arm's classifier: on its own (T-learner), or as a
        correction of the outcome's shared baseline (pooled learner: sigmoid(base + arm), in
        log-odds)."""
        model = self.estimators[outcome][arm]
        if self.learner != "pooled":
            return _predict(model, x)
        shift = self.shifts.get(outcome, {}).get(arm, 0.0)
        return _sigmoid(_predict(self.baseline[outcome], x, raw_score=True) + shift + _predict(model, x, raw_score=True))

    def control_probabilities(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """P(outcome within the horizon) with no contact, per outcome (NaN where unmodelled)."""
        x = prepare_matrix(frame, self.features, self.categories)
        if self.learner == "pooled":
            return {o: self.arm_probability(o, NO_ACTION, x) if NO_ACTION in self.estimators.get(o, {})
                    else np.full(len(frame), np.nan) for o in OUTCOMES}
        return {o: _predict(self.control[o], x) if o in self.control else np.full(len(frame), np.nan) for o in OUTCOMES}

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """MLflow's view: one column per (outcome, action), e.g. `churn:retention_offer`."""
        effects = self.effects(frame)
        return pd.DataFrame({f"{o}:{a}": effects[o][:, j] for o in OUTCOMES for j, a in enumerate(self.actions)},
                            index=frame.index)


def _predict(model: object, x: np.ndarray, raw_score: bool = False) -> np.ndarray:
    """An arm's P(outcome) (its log-odds with raw_score), or an effect regressor's
    prediction, from a prepared matrix."""
    out = lightgbm_predict(model, x, raw_score=raw_score)
    if out is None:
        raise TypeError(f"uplift estimators are LightGBM models, not {type(model).__name__}")
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _proba(model: lgb.LGBMClassifier, x: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(x), dtype=float)[:, 1]


def _arm_rows(frame: pd.DataFrame, arm: str, label: str) -> pd.DataFrame:
    return frame[(frame.action == arm) & frame[label].notna()]


def logged_actions(frame: pd.DataFrame) -> list[str]:
    """The contact actions the logged decisions name, by id."""
    return sorted(set(frame["action"].dropna().astype(str)) - {NO_ACTION})


def _enough(rows: pd.DataFrame, label: str) -> bool:
    positives = int(rows[label].sum()) if len(rows) else 0
    return len(rows) >= MIN_ARM_ROWS and MIN_ARM_POSITIVES <= positives <= len(rows) - MIN_ARM_POSITIVES


def _fit_arm(rows: pd.DataFrame, valid: pd.DataFrame | None, label: str, features: list[str],
             categories: dict[str, list[str]], trees: int | None = None) -> lgb.LGBMClassifier:
    """An outcome model of one arm, weighted by 1/propensity; early stopping on the arm's
    validation rows when given, else a fixed number of trees."""
    model = lgb.LGBMClassifier(n_estimators=trees or ARM_MAX_TREES, **ARM_PARAMS)
    x = prepare_features(rows, features, categories)
    y, w = rows[label].astype(int).to_numpy(), 1.0 / rows["propensity"].to_numpy()
    if valid is not None and trees is None and valid[label].nunique() == 2:
        xv = prepare_features(valid, features, categories)
        model.fit(x, y, sample_weight=w, eval_X=(xv,), eval_y=(valid[label].astype(int).to_numpy(),),
                  eval_sample_weight=[1.0 / valid["propensity"].to_numpy()],
                  callbacks=[lgb.early_stopping(30, verbose=False)])
    else:
        model.fit(x, y, sample_weight=w)
    return model


def _trees(model: lgb.LGBMClassifier) -> int:
    return int(getattr(model, "best_iteration_", 0) or model.n_estimators)


def fit_t_learner(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], outcomes: list[str],
                  horizon_days: int) -> UpliftModel:
    categories = categories_of(train, features)
    estimators: dict[str, dict[str, lgb.LGBMModel]] = {}
    for outcome in outcomes:
        label = OUTCOMES[outcome]
        arms: dict[str, lgb.LGBMModel] = {}
        if _enough(_arm_rows(train, NO_ACTION, label), label):  # no control group, no effects
            for arm in (NO_ACTION, *logged_actions(train)):
                rows = _arm_rows(train, arm, label)
                if _enough(rows, label):
                    arms[arm] = _fit_arm(rows, _arm_rows(valid, arm, label), label, features, categories)
        estimators[outcome] = arms
    control = {o: arms[NO_ACTION] for o, arms in estimators.items() if NO_ACTION in arms}
    unsupported = without_support(train, outcomes, estimators)
    return UpliftModel("t_learner", features, categories, outcomes, estimators, horizon_days, control,
                       unsupported=unsupported)


def without_support(train: pd.DataFrame, outcomes: list[str], estimators: dict[str, dict[str, lgb.LGBMModel]]
                    ) -> dict[str, str]:
    """Each logged action that got no model for any outcome, and why, in words."""
    out = {}
    for action in logged_actions(train):
        if any(action in estimators.get(o, {}) for o in outcomes):
            continue
        if not any(NO_ACTION in estimators.get(o, {}) for o in outcomes):
            out[action] = (f"the control group ('{NO_ACTION}') has too few decisions with both outcomes to compare "
                           f"with (at least {MIN_ARM_ROWS}, {MIN_ARM_POSITIVES} of each)")
            continue
        counts = []
        for o in outcomes:
            rows = _arm_rows(train, action, OUTCOMES[o])
            counts.append(f"{len(rows)} with a {OUTCOMES[o]} outcome, {int(rows[OUTCOMES[o]].sum()) if len(rows) else 0} "
                          "positive")
        out[action] = (f"{'; '.join(counts)}: at least {MIN_ARM_ROWS} decisions and {MIN_ARM_POSITIVES} of each "
                       "outcome are needed")
    return out


def pseudo_outcomes(rows: pd.DataFrame, label: str, action: str, mu_action: np.ndarray,
                    mu_control: np.ndarray) -> np.ndarray:
    """The doubly-robust pseudo-outcome of `action` against none on each row."""
    y = rows[label].astype(float).to_numpy()
    e = rows["propensity"].to_numpy()
    taken = rows["action"].to_numpy()
    phi = mu_action - mu_control
    phi = phi + np.where(taken == action, (y - mu_action) / e, 0.0)
    return phi - np.where(taken == NO_ACTION, (y - mu_control) / e, 0.0)


def fit_dr_learner(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], outcomes: list[str],
                   horizon_days: int, t_model: UpliftModel | None = None) -> UpliftModel:
    """The DR-learner; t_model (the T-learner on all training rows) supplies the arms,
    the trees per arm, and the nuisance on the validation rows; the training rows' nuisance
    is the same arms refitted fold by fold (cross-fitted). Measured against the pooled
    learner's arms as the nuisance (benchmarks/policy.py, issue 26): clm's policy at 0.5, 1
    and 2 x B10 summed over the 5,000-, 20,000- and 100,000-customer bases 6.36 x the oracle
    with these, 6.20 with the pooled ones (better at 20,000, worse at 5,000 and 100,000)."""
    t_model = t_model or fit_t_learner(train, valid, features, outcomes, horizon_days)
    categories = t_model.categories
    fold = customer_folds(train, FOLDS, "effect cross-fitting")
    x_train = prepare_features(train, features, categories)
    x_valid = prepare_features(valid, features, categories)
    estimators: dict[str, dict[str, lgb.LGBMModel]] = {}
    for outcome in outcomes:
        label = OUTCOMES[outcome]
        arms = cast("dict[str, lgb.LGBMClassifier]", t_model.estimators[outcome])  # a T-learner's: classifiers
        estimators[outcome] = {}
        if NO_ACTION not in arms:
            continue
        # Cross-fitted nuisance: each fold's rows get arm models fitted on the other folds.
        mu = {arm: np.zeros(len(train)) for arm in arms}
        for k in range(FOLDS):
            rest, here = train[fold != k], fold == k
            for arm, full in arms.items():
                rows = _arm_rows(rest, arm, label)
                model = _fit_arm(rows, None, label, features, categories, trees=_trees(full)) if _enough(rows, label) else full
                mu[arm][here] = _proba(model, x_train[here])
        mu_valid = {arm: _proba(model, x_valid) for arm, model in arms.items()}
        labelled = train[label].notna().to_numpy()
        labelled_valid = valid[label].notna().to_numpy()
        for action in sorted(set(arms) - {NO_ACTION}):
            phi = pseudo_outcomes(train[labelled], label, action, mu[action][labelled], mu[NO_ACTION][labelled])
            phi_valid = pseudo_outcomes(valid[labelled_valid], label, action, mu_valid[action][labelled_valid],
                                        mu_valid[NO_ACTION][labelled_valid])
            effect_model = lgb.LGBMRegressor(n_estimators=EFFECT_MAX_TREES, **EFFECT_PARAMS)
            effect_model.fit(x_train[labelled], phi, eval_X=(x_valid[labelled_valid],), eval_y=(phi_valid,),
                             callbacks=[lgb.early_stopping(30, verbose=False)])
            estimators[outcome][action] = effect_model
    return UpliftModel("dr_learner", features, categories, outcomes, estimators, horizon_days, dict(t_model.control),
                       unsupported=dict(t_model.unsupported))


def fit_pooled_learner(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], outcomes: list[str],
                       horizon_days: int, t_model: UpliftModel | None = None) -> UpliftModel:
    """The pooled learner: strength shared across the arms. Per outcome, one baseline
    classifier learns P(outcome | x) from every decision, whatever was done (the control's
    and every action's rows: the base rate, which most of each arm's outcome is); each arm
    (the control too) then learns only its correction of that baseline, in log-odds, from
    its own rows: a constant shift (`_log_odds_shift`), then small, heavily regularised trees
    boosted from the shifted baseline, stopped early on the arm's validation rows. The effect of an action is
    sigmoid(base + its correction) - sigmoid(base + the control's). A constant correction
    moves the probability most where the risk is middling, as an action that relieves part
    of a hazard does; an arm of a few hundred decisions learns a shift, not a whole model.
    The arms are the T-learner's (those with enough decisions)."""
    t_model = t_model or fit_t_learner(train, valid, features, outcomes, horizon_days)
    categories = t_model.categories
    baseline: dict[str, lgb.LGBMModel] = {}
    estimators: dict[str, dict[str, lgb.LGBMModel]] = {}
    shifts: dict[str, dict[str, float]] = {}
    for outcome in outcomes:
        label = OUTCOMES[outcome]
        arms = t_model.estimators.get(outcome, {})
        estimators[outcome] = {}
        if NO_ACTION not in arms:
            continue
        rows, held = train[train[label].notna()], valid[valid[label].notna()]
        base = lgb.LGBMClassifier(n_estimators=ARM_MAX_TREES, **ARM_PARAMS)
        x, xv = prepare_features(rows, features, categories), prepare_features(held, features, categories)
        stop: list[Any] = [lgb.early_stopping(30, verbose=False)] if held[label].nunique() == 2 else []
        base.fit(x, rows[label].astype(int), eval_X=(xv,) if stop else None,
                 eval_y=(held[label].astype(int),) if stop else None, callbacks=stop)
        baseline[outcome] = base
        shifts[outcome] = {}
        for arm in arms:
            mine, theirs = rows["action"].to_numpy() == arm, held["action"].to_numpy() == arm
            y = rows.loc[mine, label].astype(int).to_numpy()
            if len(np.unique(y)) < 2:
                continue
            base_scores = _raw(base, x[mine])
            shift = _log_odds_shift(base_scores, y)  # the arm's own level: LightGBM boosts from init_score, not a mean
            correction = lgb.LGBMClassifier(n_estimators=CORRECTION_MAX_TREES, **CORRECTION_PARAMS)
            arm_stop = stop if held.loc[theirs, label].nunique() == 2 else []
            correction.fit(x[mine], y, init_score=base_scores + shift,
                           eval_X=(xv[theirs],) if arm_stop else None,
                           eval_y=(held.loc[theirs, label].astype(int),) if arm_stop else None,
                           eval_init_score=[_raw(base, xv[theirs]) + shift] if arm_stop else None, callbacks=arm_stop)
            estimators[outcome][arm] = correction
            shifts[outcome][arm] = shift
    return UpliftModel("pooled", features, categories, outcomes, estimators, horizon_days,
                       unsupported=dict(t_model.unsupported), baseline=baseline, shifts=shifts)


def _log_odds_shift(scores: np.ndarray, y: np.ndarray, steps: int = 25) -> float:
    """The constant c that maximises the likelihood of y under sigmoid(scores + c) (Newton's
    method on one parameter): an arm's level against the shared baseline."""
    c = 0.0
    for _ in range(steps):
        p = _sigmoid(scores + c)
        gradient, curvature = float(np.sum(y - p)), float(np.sum(p * (1 - p)))
        if curvature <= 1e-12:
            break
        step = gradient / curvature
        c += float(np.clip(step, -2.0, 2.0))
        if abs(step) < 1e-8:
            break
    return c


def _raw(model: lgb.LGBMClassifier, x: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict(x, raw_score=True), dtype=float)


# ------------------------------------------------------------------ quality

def qini_curve(score: np.ndarray, outcome: np.ndarray, treated: np.ndarray, control: np.ndarray,
               propensity: np.ndarray, points: int = QINI_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(fractions, gains): targeting the top fraction of the treated-or-control rows by
    score, the incremental outcome over those rows, estimated as
    (weighted treated mean - weighted control mean) x rows, weights 1/propensity."""
    rows = np.flatnonzero(treated | control)
    order = rows[np.argsort(-score[rows], kind="stable")]
    w = 1.0 / propensity[order]
    t, c = treated[order], control[order]
    wt, wc = np.cumsum(w * t), np.cumsum(w * c)
    yt, yc = np.cumsum(w * t * outcome[order]), np.cumsum(w * c * outcome[order])
    fractions = np.linspace(0, 1, points + 1)[1:]
    gains = np.zeros(points)
    for i, f in enumerate(fractions):
        k = max(int(np.ceil(f * order.size)) - 1, 0)
        if order.size and wt[k] > 0 and wc[k] > 0:
            gains[i] = (yt[k] / wt[k] - yc[k] / wc[k]) * (k + 1)
    return fractions, gains


def qini_area(fractions: np.ndarray, gains: np.ndarray, rows: int) -> float:
    """Mean gain above random targeting (the straight line to the full gain), per row;
    0 = no better than random, negative = worse."""
    return float(np.mean(gains - fractions * gains[-1]) / max(rows, 1))


def realised_value(rows: pd.DataFrame, values: CustomerValues) -> np.ndarray:
    """What each row's outcome was worth by the value rule: keeping (not churning) and
    upgrading; the uplift of this between arms is the realised incremental value."""
    churn = rows[OUTCOMES["churn"]].astype(float).fillna(0.0).to_numpy()
    upgrade = rows[OUTCOMES["upgrade"]].astype(float).fillna(0.0).to_numpy() if OUTCOMES["upgrade"] in rows else 0.0
    return -churn * values.keep_value + upgrade * values.upgrade_margin


def predicted_gross_value(effects: dict[str, np.ndarray], values: CustomerValues) -> np.ndarray:
    """(rows, actions) of the effects given: the value rule's retention and upgrade parts,
    before costs."""
    shape = next(iter(effects.values())).shape
    zero = np.zeros(shape)
    parts = expected_value(effects.get("churn", zero), effects.get("upgrade", zero), values, zero)
    return parts.retention + parts.upgrade


def value_qini(model: UpliftModel, rows: pd.DataFrame, values: CustomerValues) -> dict[str, float]:
    """Per modelled action, the value Qini area on logged decision rows (see qini_curve),
    and `total`, their sum: what the learners are compared and gated on."""
    predicted = predicted_gross_value(model.effects(rows), values)
    outcome = realised_value(rows, values)
    taken = rows["action"].to_numpy()
    control = taken == NO_ACTION
    propensity = rows["propensity"].to_numpy()
    out = {}
    for j, action in enumerate(model.actions):
        treated = taken == action
        fractions, gains = qini_curve(predicted[:, j], outcome, treated, control, propensity)
        out[action] = qini_area(fractions, gains, int((treated | control).sum()))
    out["total"] = float(sum(out.values()))
    return out


@dataclass(frozen=True)
class PseudoValues:
    """Per logged row and action, the pseudo-outcome of the action's gross value
    (`pseudo_values`), columns in `actions` order (NaN where unknown)."""

    matrix: np.ndarray
    actions: list[str]


def pseudo_effects(rows: pd.DataFrame, actions: Sequence[str]) -> dict[str, np.ndarray]:
    """Per outcome, (rows, actions) inverse-propensity pseudo-outcomes of each
    action's effect, 1[a] Y / e - 1[none] Y / e (the doubly-robust ones with no outcome
    model): unbiased for the effect given x, and free of every model, so that no learner is
    judged by its own nuisance. NaN where the action or the control was never logged, or
    the row has no label."""
    phi = {}
    for outcome, label in OUTCOMES.items():
        out = np.full((len(rows), len(actions)), np.nan)
        if label in rows and (rows["action"] == NO_ACTION).any():
            labelled = rows[label].notna().to_numpy()
            zero = np.zeros(int(labelled.sum()))
            for j, action in enumerate(actions):
                if (rows["action"] == action).any():
                    out[labelled, j] = pseudo_outcomes(rows[labelled], label, action, zero, zero)
        phi[outcome] = out
    return phi


def average_effects(rows: pd.DataFrame, label: str = OUTCOMES["churn"]) -> dict[str, float]:
    """Each logged action's average effect on `label` over the logged decisions: per
    decision month (`event_timestamp`), the inverse-propensity weighted mean outcome of its
    rows minus the control's (Hajek); then the months' figures averaged, weighted by the
    action's decisions in each. Only rows with a label and a propensity strictly between 0
    and 1 count (a customer who could only have got what they got compares with nobody),
    and only months holding both the action and the control; an action without one is left
    out."""
    p = rows["propensity"].to_numpy(dtype=float)
    known = rows[rows[label].notna().to_numpy() & (p > 0) & (p < 1)]
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for _, month in known.groupby("event_timestamp", sort=True):
        weight = 1.0 / month["propensity"].to_numpy(dtype=float)
        outcome = month[label].to_numpy(dtype=float)
        taken = month["action"].to_numpy()
        control = taken == NO_ACTION
        if not control.any():
            continue
        base = np.sum(weight[control] * outcome[control]) / np.sum(weight[control])
        for action in logged_actions(month):
            arm = taken == action
            effect = np.sum(weight[arm] * outcome[arm]) / np.sum(weight[arm]) - base
            sums[action] = sums.get(action, 0.0) + effect * int(arm.sum())
            counts[action] = counts.get(action, 0) + int(arm.sum())
    return {a: sums[a] / counts[a] for a in sorted(sums)}


def pseudo_values(rows: pd.DataFrame, values: CustomerValues, actions: Sequence[str] | None = None) -> PseudoValues:
    """The pseudo-outcomes of each action's gross value (the value rule on the churn and
    upgrade pseudo-outcomes), for the actions given (default: every action logged in rows);
    NaN where the churn one is missing."""
    actions = logged_actions(rows) if actions is None else list(actions)
    phi = pseudo_effects(rows, actions)
    phi["upgrade"] = np.nan_to_num(phi["upgrade"], nan=0.0)
    return PseudoValues(predicted_gross_value(phi, values), actions)


def squared_errors(model: UpliftModel, rows: pd.DataFrame, values: CustomerValues, pseudo: PseudoValues) -> np.ndarray:
    """Per row, the squared error of the predicted gross values against the pseudo-outcomes,
    summed over the actions the pseudo-outcomes cover."""
    predicted = predicted_gross_value(model.effects(rows, pseudo.actions), values)
    return np.nansum((pseudo.matrix - predicted) ** 2, axis=1)


def clearly_better(challenger: UpliftModel, default: UpliftModel, rows: pd.DataFrame, values: CustomerValues,
                   pseudo: PseudoValues, z: float = 1.96) -> bool:
    """Whether the challenger's squared error is below the default's with confidence (the
    paired per-row difference's mean above z standard errors): on one window of noisy
    pseudo-outcomes, a small difference is a coin toss."""
    diff = squared_errors(default, rows, values, pseudo) - squared_errors(challenger, rows, values, pseudo)
    return _clearly_positive(diff, z)


def clearly_worse_than_no_effect(model: UpliftModel, rows: pd.DataFrame, values: CustomerValues,
                                 pseudo: PseudoValues, z: float = 1.96) -> bool:
    """Whether the model's squared error against the pseudo-outcomes is above that of
    predicting no effect with confidence (the paired per-row difference's mean beyond z
    standard errors): its uplift R2 below 0, beyond doubt."""
    no_effect = np.nansum(pseudo.matrix ** 2, axis=1)
    return _clearly_positive(squared_errors(model, rows, values, pseudo) - no_effect, z)


def _clearly_positive(diff: np.ndarray, z: float) -> bool:
    """Whether paired per-row differences have a mean above z standard errors."""
    if diff.size < 2:
        return False
    return bool(diff.mean() > z * diff.std(ddof=1) / np.sqrt(diff.size))


def uplift_r2(model: UpliftModel, rows: pd.DataFrame, values: CustomerValues, pseudo: PseudoValues) -> float:
    """1 - (squared error of the predicted gross values against the pseudo-outcomes) /
    (that of predicting no effect), over the actions the pseudo-outcomes cover: above 0,
    the model tells more than "no action changes anything". The transformed-outcome loss
    of uplift model selection (Athey and Imbens), steadier than a Qini area on one window."""
    predicted = predicted_gross_value(model.effects(rows, pseudo.actions), values)
    known = ~np.isnan(pseudo.matrix)
    zero = float(np.sum(pseudo.matrix[known] ** 2))
    return 1.0 - float(np.sum((pseudo.matrix[known] - predicted[known]) ** 2)) / zero if zero > 0 else float("nan")


def action_r2(model: UpliftModel, rows: pd.DataFrame, values: CustomerValues, pseudo: PseudoValues
              ) -> dict[str, float]:
    """`uplift_r2` of each modelled action on its own (its column of the pseudo-outcomes):
    above 0, its effect model tells more than "it changes nothing"; NaN where the action
    was not logged in rows."""
    predicted = predicted_gross_value(model.effects(rows, pseudo.actions), values)
    out = {}
    for action in model.actions:
        if action not in pseudo.actions:
            out[action] = float("nan")
            continue
        j = pseudo.actions.index(action)
        known = ~np.isnan(pseudo.matrix[:, j])
        zero = float(np.sum(pseudo.matrix[known, j] ** 2))
        error = float(np.sum((pseudo.matrix[known, j] - predicted[known, j]) ** 2))
        out[action] = 1.0 - error / zero if zero > 0 else float("nan")
    return out


@dataclass(frozen=True)
class ArmValues:
    """A nuisance model's expected realised value (`realised_value`) of each arm on some
    rows, before any action is taken away by a gate: what the doubly-robust Qini
    (`dr_value_qini`) subtracts from the outcomes to leave less noise."""

    by_arm: dict[str, np.ndarray]


def arm_values(nuisance: UpliftModel, rows: pd.DataFrame, values: CustomerValues) -> ArmValues:
    """Per arm of a pooled or T-learner (`nuisance`, fitted on other rows than `rows`), the
    expected realised value on rows: - P(churn) x keep value + P(upgrade) x upgrade margin."""
    x = prepare_matrix(rows, nuisance.features, nuisance.categories)
    arms = {arm for o in OUTCOMES for arm in nuisance.estimators.get(o, {})}
    out = {}
    for arm in sorted(arms):
        value = np.zeros(len(rows))
        for outcome, sign, scale in (("churn", -1.0, values.keep_value), ("upgrade", 1.0, values.upgrade_margin)):
            if arm in nuisance.estimators.get(outcome, {}):
                value += sign * nuisance.arm_probability(outcome, arm, x) * scale
        out[arm] = value
    return ArmValues(out)


def dr_value_qini(score: np.ndarray, rows: pd.DataFrame, values: CustomerValues, action: str, nuisance: ArmValues,
                  resamples: int = 200, seed: int = 0) -> tuple[float, float]:
    """(area, standard error): the Qini area of targeting `action` by `score` over the
    labelled rows, on doubly-robust pseudo-outcomes of its realised value,
    mu_a - mu_none + 1[a] (Y - mu_a) / e - 1[none] (Y - mu_none) / e (mu from the nuisance
    arms; a row that took another action contributes mu_a - mu_none), each row's unbiased for
    the action's value effect on it: the gain of the top fraction is the sum of their
    pseudo-outcomes, the area the mean gain above random targeting, per row (as
    `qini_area`). The standard error is a bootstrap's over the rows; NaN for the area where
    there is nothing to judge. The inverse-propensity Qini (`value_qini`) carries each row's
    whole outcome (a churn times a keep value), and on the simulator's 100,000 customers it
    ranked the TRUE upgrade-offer effects below random on both held-out months (-13 and -21,
    standard errors 6 and 7.5); on these pseudo-outcomes (the T-learner's arms as the
    nuisance) +12.0 and +7.6 (standard errors 5.0 and 5.7)."""
    labelled = rows[OUTCOMES["churn"]].notna().to_numpy() if OUTCOMES["churn"] in rows else np.ones(len(rows), bool)
    judged = rows[labelled].assign(realised_value=realised_value(rows, values)[labelled])
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = pseudo_outcomes(judged, "realised_value", action, nuisance.by_arm[action][labelled],
                              nuisance.by_arm[NO_ACTION][labelled])
    ranked = score[labelled]
    if phi.size == 0 or not np.all(np.isfinite(phi)) or not np.all(np.isfinite(ranked)):
        return float("nan"), float("nan")
    fractions = np.linspace(0, 1, QINI_POINTS + 1)[1:]

    def area(rows_at: np.ndarray) -> float:
        order = rows_at[np.argsort(-ranked[rows_at], kind="stable")]
        gains = np.cumsum(phi[order])[np.maximum(np.ceil(fractions * order.size).astype(int) - 1, 0)]
        return qini_area(fractions, gains, order.size)

    rng = np.random.default_rng(seed)
    spread = [area(rng.integers(0, phi.size, phi.size)) for _ in range(resamples)]
    return area(np.arange(phi.size)), float(np.std(spread))


def gate_actions(model: UpliftModel, rows: pd.DataFrame, values: CustomerValues, nuisance: ArmValues,
                 z: float = 1.96) -> dict[str, float]:
    """The gate per action, on held-out decisions: an action whose effect model ranks them
    worse than at random beyond doubt (its doubly-robust value Qini, `dr_value_qini`, more
    than z standard errors below 0) loses its model, so it is never recommended, and is said
    in `model.unsupported` with its figure. It judges only an action held out
    MIN_GATE_DECISIONS times or more beside as many controls. Returns the figures (Qini
    areas) of the actions judged.

    Why "worse beyond doubt" and not "not better": a month of held-out decisions cannot show
    that a good model beats random. On the simulator's 100,000 customers (700 to 1,300
    decisions of each action in a month) the TRUE effects' own Qini was below 0 for three of
    the six actions in one month or the other, and within two standard errors of 0 in 11 of
    the 12 (action, month) pairs; a gate on the sign of the inverse-propensity Qini took
    away the upgrade offer, whose model's rank correlation with the true effects was 0.72,
    and sank clm from 0.74 to 0.21 of the oracle (benchmarks/policy.py). What a held-out
    month can show is a model that ranks the wrong way round."""
    counts = rows["action"].value_counts()
    if counts.get(NO_ACTION, 0) < MIN_GATE_DECISIONS:
        return {}
    judged = [a for a in model.actions if counts.get(a, 0) >= MIN_GATE_DECISIONS and a in nuisance.by_arm]
    predicted = predicted_gross_value(model.effects(rows, judged), values) if judged else np.zeros((len(rows), 0))
    figures = {}
    for j, action in enumerate(judged):
        qini, error = dr_value_qini(predicted[:, j], rows, values, action, nuisance)
        if not np.isfinite(qini):  # nothing to judge it by (a missing propensity or prediction)
            continue
        figures[action] = qini
        if qini >= -z * error:
            continue
        for arms in model.estimators.values():
            arms.pop(action, None)
        model.unsupported[action] = (f"on the held-out decisions, targeting by its effect model did worse than "
                                     f"targeting anyone (doubly-robust value Qini {qini:.4f}, standard error "
                                     f"{error:.4f})")
    return figures


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; NaN where either side is constant (nothing to rank)."""
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(pd.Series(a).corr(pd.Series(b), method="spearman"))


def truth_quality(model: UpliftModel, population: pd.DataFrame, truth: pd.DataFrame,
                  values: CustomerValues) -> dict[str, float]:
    """Against the simulator's true effects (`ground_truth_effects`) for every customer of
    `population` (one cutoff): per action, the Spearman correlation of predicted and true
    churn effect, and the true gross value captured by the top 10% / 30% by predicted value
    as a fraction of what the top 10% / 30% by true value hold; the mean Spearman over
    actions, and `all_top*_captured`: the captured value summed over actions as a fraction
    of the oracle's sum (the actions that matter weigh most).

    truth: (customer_id, action, effect_churn_90d, effect_upgrade_90d)."""
    ids = population["customer_id"]
    true_churn = truth.pivot(index="customer_id", columns="action", values="effect_churn_90d").reindex(ids)
    true_up = truth.pivot(index="customer_id", columns="action", values="effect_upgrade_90d").reindex(ids)
    actions = [a for a in model.actions if a in true_churn.columns]  # the truth knows the simulator's actions
    effects = model.effects(population, actions)
    predicted = predicted_gross_value(effects, values)
    true_value = predicted_gross_value({"churn": true_churn[actions].to_numpy(),
                                        "upgrade": true_up[actions].to_numpy()}, values)
    known = ~np.isnan(true_value).any(axis=1)
    figures: dict[str, float] = {}
    pooled = {0.1: [0.0, 0.0], 0.3: [0.0, 0.0]}
    for j, action in enumerate(actions):
        p, t = predicted[known, j], true_value[known, j]
        figures[f"{action}_spearman_churn"] = _spearman(effects["churn"][known, j], true_churn[action].to_numpy()[known])
        figures[f"{action}_spearman_value"] = _spearman(p, t)
        for share in (0.1, 0.3):
            k = max(int(share * p.size), 1)
            best = np.sort(t)[::-1][:k].sum()
            got = t[np.argsort(-p, kind="stable")[:k]].sum()
            figures[f"{action}_top{int(share * 100)}_captured"] = float(got / best) if best > 0 else float("nan")
            pooled[share][0] += got
            pooled[share][1] += max(best, 0.0)
    for name in ("spearman_churn", "spearman_value"):
        per_action = [v for k, v in figures.items() if k.endswith(name) and np.isfinite(v)]
        figures[f"mean_{name}"] = float(np.mean(per_action)) if per_action else float("nan")
    for share, (got, best) in pooled.items():  # over actions: sum captured / sum of the oracle's
        figures[f"all_top{int(share * 100)}_captured"] = got / best if best > 0 else float("nan")
    figures["customers"] = float(known.sum())
    return figures
