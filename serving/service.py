"""The real-time API for CRM systems (BentoML 1.4). Start it with `clm serve`.

  POST /score           one customer's scores, stage, CLV and ranked actions with reasons
  POST /score_batch     the same for up to 1,000 customers
  POST /score_features  scores for features the caller sends (validated by name and type)
  POST /feedback        a decision was accepted or rejected (the decision journal; every
                        answer of the three above is logged there under its own decision_id)
  GET  /healthz, /livez, /readyz (models loaded and the online store answering), /metrics
       (Prometheus), and the OpenAPI page at / (spec at /docs.json): BentoML's own

Errors are JSON `{"error": ..., "field": ...}`: 404 unknown customer or decision, 400/422 malformed
input naming the field, 413 a batch over the limit, 401 without a valid API key (when keys
are configured). Configuration, from the environment (`clm serve` sets it):

  CLM_WORKSPACE         the workspace (default: ./workspace, as every command)
  CLM_TRACKING_URI      an MLflow server (default: the workspace's embedded store)
  CLM_CATALOGUE         an action catalogue file (default: the built-in one)
  CLM_WORKERS           worker processes (default 1); each holds its own models
  CLM_RELOAD_SECONDS    how often to look for a newly promoted champion (default 5)
  CLM_API_KEYS, CLM_API_KEYS_FILE   API keys (`serving.auth`)
"""
from __future__ import annotations

import os
import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, cast

import bentoml
import pandas as pd
from pydantic import Field
from starlette.responses import JSONResponse

from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.catalogue import load_catalogue
from decisions.journal import JournalUnavailable
from decisions.log import NotRecommended, UnknownDecision
from serving.auth import ApiKeyMiddleware, key_hashes
from serving.decide import Context
from serving.runtime import RequestError, Runtime, poll
from serving.schemas import (
    MAX_BATCH,
    BatchResponse,
    ContextIn,
    CustomerId,
    FeatureValues,
    FeedbackResponse,
    MaxActions,
    ScoreResponse,
)

# BentoML 1.4 reads pydantic's model_fields from an instance on every request; the
# deprecation warning it raises would be printed per request.
warnings.filterwarnings("ignore", message="Accessing the 'model_fields' attribute on the instance")

ROUTES = ("/score", "/score_batch", "/score_features", "/feedback")
DecisionId = Annotated[str, Field(min_length=1, max_length=200, examples=["api-5f1c0e9d2b7a4c3e8f6a1b2c3d4e5f60"],
                                  description="The decision_id of a /score answer or of the nightly batch's output.")]
ActedOn = Annotated[str | None, Field(max_length=200, examples=["retention_offer"],
                                      description="The recommended action the CRM acted on (default: the first).")]


def _context(context: ContextIn | None) -> Context | None:
    return None if context is None else Context(intent=context.intent, channel=context.channel)


# BentoML sends a Response an API method returns as it is. The methods keep their success
# type as the return annotation, which BentoML reads for the OpenAPI schema and to check
# the answers (a union would change both): their error returns ignore mypy's return-value check.
def _error(err: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(err), "field": err.field}, status_code=err.status)


@bentoml.service(
    name="clm",
    workers=int(os.environ.get("CLM_WORKERS", "1")),
    logging={"access": {"enabled": False}},
    traffic={"timeout": 60},
)
class Clm:
    """Scores and next-best actions for one customer at a time, for CRM systems."""

    def __init__(self) -> None:
        workspace = Workspace.at(os.environ.get("CLM_WORKSPACE") or None)
        catalogue_file = os.environ.get("CLM_CATALOGUE")
        self.runtime = Runtime(workspace, os.environ.get("CLM_TRACKING_URI") or None,
                               load_catalogue(Path(catalogue_file) if catalogue_file else None))
        self._stop = threading.Event()
        every = float(os.environ.get("CLM_RELOAD_SECONDS", "5"))
        threading.Thread(target=poll, args=(self.runtime, every, self._stop), daemon=True, name="clm-reload").start()

    def __is_ready__(self) -> bool:
        return self.runtime.ready()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()

    @bentoml.api(route="/score")
    def score(self, customer_id: CustomerId, context: ContextIn | None = None, max_actions: MaxActions = 3) -> ScoreResponse:
        """One customer's churn and upsell probability, current and predicted stage, CLV and
        up to max_actions recommended actions with their value and reasons."""
        try:
            answers, unknown = self.runtime.answer_ids([customer_id], _context(context), max_actions)
        except RequestError as err:
            return _error(err)  # type: ignore[return-value]  # see _error
        if unknown:
            return _error(RequestError(404, f"customer '{customer_id}' has no features in the online store: not a "  # type: ignore[return-value]  # see _error
                                       "customer at its snapshot date, or the store was loaded before they "
                                       "signed up (`clm features materialize`).", "customer_id"))
        return ScoreResponse.model_validate(answers[0])

    @bentoml.api(route="/score_batch")
    def score_batch(self, customer_ids: Annotated[list[CustomerId], Field(
                        min_length=1, json_schema_extra={"maxItems": MAX_BATCH},
                        description=f"Up to {MAX_BATCH:,} customer ids.", examples=[["C0000042", "C0000043"]])],
                    context: ContextIn | None = None, max_actions: MaxActions = 3) -> BatchResponse:
        """The same as /score for up to 1,000 customers; ids without features are listed in `unknown`."""
        if len(customer_ids) > MAX_BATCH:
            return _error(RequestError(413, f"customer_ids holds {len(customer_ids):,} ids; at most {MAX_BATCH:,} "  # type: ignore[return-value]  # see _error
                                       "a request (split the list).", "customer_ids"))
        try:
            answers, unknown = self.runtime.answer_ids(list(dict.fromkeys(customer_ids)), _context(context), max_actions)
        except RequestError as err:
            return _error(err)  # type: ignore[return-value]  # see _error
        return BatchResponse.model_validate({"results": answers, "unknown": unknown})

    @bentoml.api(route="/score_features")
    def score_features(self, customer_id: CustomerId, features: FeatureValues,
                       as_of: Annotated[datetime | None, Field(
                           description="When the features describe the customer (default: now); contacts "
                                       "before it count for cooldowns.", examples=["2026-01-01T00:00:00Z"])] = None,
                       context: ContextIn | None = None, max_actions: MaxActions = 3) -> ScoreResponse:
        """Scores and actions for features the caller holds (fresher than the online store's)."""
        when = None
        if as_of is not None:
            stamp = pd.Timestamp(as_of)
            when = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        try:
            answer = self.runtime.answer_features(customer_id, features, when, _context(context), max_actions)
        except RequestError as err:
            return _error(err)  # type: ignore[return-value]  # see _error
        return ScoreResponse.model_validate(answer)

    @bentoml.api(route="/feedback")
    def feedback(self, decision_id: DecisionId, response: Literal["accepted", "rejected"],
                 action: ActedOn = None) -> FeedbackResponse:
        """Record that a decision was accepted or rejected (the decision journal): 404 for an
        id clm never gave, 422 for an action the decision did not recommend."""
        try:
            self.runtime.feedback(decision_id, response, action)
        except UnknownDecision as err:
            return _error(RequestError(404, str(err), "decision_id"))  # type: ignore[return-value]  # see _error
        except NotRecommended as err:
            return _error(RequestError(422, str(err), "action"))  # type: ignore[return-value]  # see _error
        except JournalUnavailable as err:
            return _error(RequestError(503, str(err), None))  # type: ignore[return-value]  # see _error
        except ClmError as err:
            return _error(RequestError(422, str(err), "decision_id"))  # type: ignore[return-value]  # see _error
        return FeedbackResponse(decision_id=decision_id, response=response, action=action, recorded=True)


_hashes = key_hashes()
if _hashes:
    # @bentoml.service made Clm a bentoml.Service; mypy does not apply class decorators.
    cast("bentoml.Service[Clm]", Clm).add_asgi_middleware(ApiKeyMiddleware, hashes=_hashes, protected=ROUTES)
