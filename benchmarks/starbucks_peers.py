"""The peers of benchmarks/starbucks.py, run by it in a venv of their own (causalml 0.18 pins
scipy, statsmodels and black beyond clm's): never imported by clm.

    <venv>/bin/python benchmarks/starbucks_peers.py TRAIN.parquet TEST.parquet CLM.parquet OUT_DIR

Fits causalml's S, T, X and DR meta-learners with LightGBM (its defaults; the known
propensity, the training file's share promoted) on the training file's V1..V7, Promotion and
purchase; writes each one's effect on the chance of a purchase for every test customer
(OUT_DIR/effects.parquet), then causalml's own Qini and AUUC (normalised, with bootstrap
intervals) of every model's effects on the test outcomes, clm's (CLM.parquet) among them
(OUT_DIR/scores.parquet).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from causalml.inference.meta import (
    BaseDRRegressor,
    BaseSClassifier,
    BaseTClassifier,
    BaseXClassifier,
)
from causalml.metrics import auuc_score, qini_score
from lightgbm import LGBMClassifier, LGBMRegressor

FEATURES = [f"V{i}" for i in range(1, 8)]
TREATED, CONTROL = "promotion", "control"
SEED = 0
BOOTSTRAPS = 200


def classifier() -> LGBMClassifier:
    return LGBMClassifier(random_state=SEED, n_jobs=2, verbose=-1)


def regressor() -> LGBMRegressor:
    return LGBMRegressor(random_state=SEED, n_jobs=2, verbose=-1)


def learners() -> dict[str, object]:
    return {
        "causalml S": BaseSClassifier(learner=classifier(), control_name=CONTROL),
        "causalml T": BaseTClassifier(learner=classifier(), control_name=CONTROL),
        "causalml X": BaseXClassifier(outcome_learner=classifier(), effect_learner=regressor(), control_name=CONTROL),
        # The regressor variant: causalml 0.18's BaseDRClassifier builds its pseudo-outcomes from the outcome
        # models' predict(), class labels (nearly all 0 at a 1% purchase rate), not probabilities. A
        # regression of the 0/1 purchase is the probability the DR-learner needs.
        "causalml DR": BaseDRRegressor(learner=regressor(), control_name=CONTROL),
    }


def arms(frame: pd.DataFrame) -> np.ndarray:
    return np.where(frame["Promotion"] == "Yes", TREATED, CONTROL)


def fitted_effects(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    treatment = arms(train)
    share = float((treatment == TREATED).mean())
    out = pd.DataFrame({"ID": test["ID"].to_numpy()})
    for name, learner in learners().items():
        x, y = train[FEATURES].to_numpy(dtype=float), train["purchase"].to_numpy()
        if name.endswith("DR"):  # its cross-fitting folds are drawn at random: seeded, as clm's are
            learner.fit(x, treatment, y, p=np.full(len(train), share), seed=SEED)
            effect = learner.predict(test[FEATURES].to_numpy(dtype=float), p=np.full(len(test), share))
        elif name.endswith("X"):
            learner.fit(x, treatment, y, p=np.full(len(train), share))
            effect = learner.predict(test[FEATURES].to_numpy(dtype=float), p=np.full(len(test), share))
        else:
            learner.fit(x, treatment, y)
            effect = learner.predict(test[FEATURES].to_numpy(dtype=float))
        out[name] = np.asarray(effect, dtype=float).reshape(len(test), -1)[:, 0]
        print(f"  {name}: fitted", flush=True)
    return out


def scores(test: pd.DataFrame, effects: pd.DataFrame) -> pd.DataFrame:
    """causalml's Qini and AUUC of each model's effects, with 95% bootstrap intervals."""
    frame = effects.drop(columns="ID").assign(y=test["purchase"].to_numpy(),
                                              w=(arms(test) == TREATED).astype(int))
    qini = qini_score(frame, return_ci=True, n_bootstrap=BOOTSTRAPS, random_state=SEED)
    auuc = auuc_score(frame, return_ci=True, n_bootstrap=BOOTSTRAPS, random_state=SEED)
    return pd.concat({"qini": qini, "auuc": auuc}, axis=1).reset_index(names="model")


def main(train_path: str, test_path: str, clm_path: str, out_dir: str) -> None:
    warnings.filterwarnings("ignore")
    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    effects = fitted_effects(train, test)
    ours = pd.read_parquet(clm_path)
    effects = effects.merge(ours, on="ID", validate="one_to_one")
    out = Path(out_dir)
    effects.to_parquet(out / "effects.parquet", index=False)
    table = scores(test.set_index("ID").loc[effects["ID"]].reset_index(), effects)
    table.columns = ["_".join(c for c in col if c) if isinstance(col, tuple) else col for col in table.columns]
    table.to_parquet(out / "scores.parquet", index=False)


if __name__ == "__main__":
    main(*sys.argv[1:5])
