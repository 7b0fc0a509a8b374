"""The retrain job: the scheduled retraining, safe to rerun and safe to kill.

Features brought up to date, every model trained (a model whose latest version was trained
on the same inputs is kept), the champion gate, the online store loaded, and the base
scored and decided into WORKSPACE/scores/DATE.parquet (kept as it is when nothing
changed), all as of one date. Champions change only after every model has trained.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clm.workspace import Workspace
from decisions.catalogue import Catalogue
from features.build import BuildResult
from pipelines import outputs
from pipelines.jobs.engine import engine_session
from pipelines.jobs.features import (
    Materialized,
    Registered,
    build,
    load_online_store,
    register,
)
from pipelines.jobs.reporting import Quiet, Reporter
from pipelines.jobs.score import ScoreSettings, score_base
from pipelines.jobs.train import Trained, train_models
from pipelines.score import ScoreResult
from pipelines.spark import SparkSettings
from training.config import TrainConfig
from training.labels import LabelConfig
from training.names import MODEL_NAMES


@dataclass(frozen=True)
class RetrainSettings:
    as_of: pd.Timestamp
    horizon_days: int = 90  # days ahead that churn and upsell are predicted
    catalogue: Catalogue | None = None  # None: the one shipped
    budget: float | None = None  # None: `decisions.budget`'s default
    spark: SparkSettings | None = None  # None: this machine
    tracking_uri: str | None = None


@dataclass
class Retrained:
    features: list[BuildResult]
    registered: Registered
    trained: Trained
    online: Materialized
    scores: ScoreResult


def retrain(workspace: Workspace, settings: RetrainSettings, reporter: Reporter | None = None) -> Retrained:
    reporter = reporter or Quiet()
    when = settings.as_of
    with engine_session(workspace, settings.spark, reporter) as spark:
        reporter.step("1/4 Features")
        built = []
        for dates in (None, [when]):  # every month start, then the date itself
            built.append(build(workspace, dates, "monthly", spark, reporter))
            reporter.finished(built[-1])
        registered = register(workspace, None, reporter)  # the online store already configured stays
        reporter.step("2/4 Train, gate and promote")
        config = TrainConfig(models=MODEL_NAMES, labels=LabelConfig(horizon_days=settings.horizon_days), as_of=when,
                             tracking_uri=settings.tracking_uri, command="clm retrain", skip_up_to_date=True)
        trained = train_models(workspace, config, reporter)
        reporter.finished(trained)
        trained.require_some()
        reporter.step("3/4 Online store")
        online = load_online_store(workspace, when, reporter)
        reporter.finished(online)
        reporter.step("4/4 Score and decide")
        scores = score_base(workspace, ScoreSettings(when, outputs.scores_path(workspace, when), settings.catalogue,
                                                     settings.budget, keep_current=True,
                                                     tracking_uri=settings.tracking_uri),
                            spark, reporter)
        reporter.finished(scores)
    return Retrained(built, registered, trained, online, scores)
