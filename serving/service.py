"""The real-time API for CRM systems: a BentoML 1.4 service whose routes are a FastAPI app
mounted in it (`@bentoml.asgi_app`). Start it with `clm serve`.

  POST /score           one customer's scores, stage, CLV and ranked actions with reasons
  POST /score_batch     the same for up to 1,000 customers, in the order asked
  POST /score_features  scores for features the caller sends (names, types, ranges checked)
  POST /feedback        a decision was accepted or rejected (the decision journal; every
                        answer of the three above is logged there under its own decision_id)
  GET  /openapi.json    the OpenAPI 3.1 spec, generated from the models the routes answer
                        with (`serving.schemas`); the docs page at / (served here, no
                        third-party script)
  GET  /healthz, /livez, /readyz (models loaded and the online store read for real), /metrics
       (Prometheus, this server's own): BentoML's

Every error is JSON `{"error": ..., "field": ...}` (`serving.schemas.ErrorBody`, shaped and
logged on one line by `serving.http.Guard`): 400 a body that is not JSON, 401 without a
valid API key (when keys are configured), 404 an unknown customer, decision or route, 405 a
wrong method, 409 feedback on an action the decision did not recommend, 413 a body over the
limit, 408 a body not all there within 30 s, 415 a body not sent as JSON, 422 a JSON body that breaks the schema or the features'
ranges, naming the field, 503 the online store unreadable (and /readyz 503 until
it is back). Configuration, from the environment (`clm serve` sets it):

  CLM_WORKSPACE         the workspace (default: ./workspace, as every command)
  CLM_TRACKING_URI      an MLflow server (default: the workspace's embedded store)
  CLM_CATALOGUE         an action catalogue file (default: the built-in one)
  CLM_WORKERS           worker processes (default 1); each holds its own models
  CLM_RELOAD_SECONDS    how often to look for a newly promoted champion (default 5)
  CLM_MAX_BODY_BYTES    the largest request body taken (default 1 MiB)
  CLM_BODY_SECONDS      how long a request body may take to arrive (default 30; then 408)
  CLM_DRAIN_SECONDS     on SIGTERM, how long /readyz says 503 while requests are still
                        answered, before the server stops (default 10; 0: stop at once)
  CLM_API_KEYS, CLM_API_KEYS_FILE   API keys (`serving.auth`)
"""
from __future__ import annotations

import os
import threading
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import bentoml
import pandas as pd
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.catalogue import Context, load_catalogue
from decisions.journal import JournalUnavailable
from decisions.log import NotRecommended, UnknownDecision
from serving.auth import ApiKeyMiddleware, key_hashes
from serving.drain import CloseWhileDraining, Drain
from serving.http import BODY_SECONDS, DEFAULT_MAX_BODY_BYTES, Guard
from serving.errors import RequestError, StoreUnavailable
from serving.vocabulary import vocabulary_of
from serving.schemas import (
    MAX_BATCH,
    request_models,
    BatchRequest,
    BatchResponse,
    ConsentRequest,
    ConsentResponse,
    ContextIn,
    ErrorBody,
    FeaturesRequest,
    FeedbackRequest,
    FeedbackResponse,
    ScoreRequest,
    ScoreResponse,
)

# BentoML 1.4 reads pydantic's model_fields from an instance; the warning would be printed per request.
warnings.filterwarnings("ignore", message="Accessing the 'model_fields' attribute on the instance")

ROUTES = ("/score", "/score_batch", "/score_features", "/feedback", "/consent")
SWAGGER_ASSETS = "/static_content"  # BentoML's copy of Swagger UI, served by this server
_hashes = key_hashes()
_secured = bool(_hashes)
# What requests may name here (intents, features, plans): the request models and the spec are
# made for this workspace and catalogue, read once at import (BentoML builds the routes then).
WORKSPACE = Workspace.at(os.environ.get("CLM_WORKSPACE") or None)
CATALOGUE = load_catalogue(Path(os.environ["CLM_CATALOGUE"]) if os.environ.get("CLM_CATALOGUE") else None)
VOCABULARY = vocabulary_of(WORKSPACE, CATALOGUE)
REQUESTS = request_models(VOCABULARY)
if TYPE_CHECKING:  # mypy sees the general models; FastAPI, which reads the annotations, this workspace's
    ScoreBody = ScoreRequest
    BatchBody = BatchRequest
    FeaturesBody = FeaturesRequest
else:
    ScoreBody, BatchBody, FeaturesBody = REQUESTS.score, REQUESTS.batch, REQUESTS.features
# This worker's stop on SIGTERM (process-wide, as signals are): not ready, then drained.
DRAIN = Drain(float(os.environ.get("CLM_DRAIN_SECONDS", "10")))


def _version() -> str:
    try:
        return metadata.version("clm")
    except metadata.PackageNotFoundError:  # run from a Bento without the package's metadata
        return "0+unknown"


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    said = {400: "The body is not JSON.", 401: "No valid API key (X-API-Key or Authorization: Bearer).",
            404: "Not found.", 409: "The decision did not recommend that action.", 413: "The body is over the size limit (CLM_MAX_BODY_BYTES, default 1 MiB).",
            415: "The body is not sent as application/json.",
            422: "The JSON body breaks the schema or a range; `field` names what.",
            503: "The online store cannot be read now (retry; /readyz says when it is back)."}
    shown = (*statuses, 401) if _secured else statuses
    return {s: {"model": ErrorBody, "description": said[s]} for s in sorted(shown)}


def _with_feedback_link(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """An answer's decision_id is what /feedback takes (an OpenAPI link: clients and fuzzers follow it)."""
    return {**responses, 200: {"description": "Successful Response", "links": {"feedback": {
        "operationId": "feedback", "description": "Report what the customer did with this answer's recommendation.",
        "requestBody": {"decision_id": "$response.body#/decision_id", "response": "accepted"}}}}}


app = FastAPI(
    title="clm",
    version=_version(),
    summary="Churn, upsell, lifecycle stage, CLV and next-best actions for one customer at a time.",
    description="The real-time API of clm for CRM systems. Every answer names the model versions that made it and "
                "carries a `decision_id` to report feedback with. Errors are `ErrorBody` at every status."
                + (" Send the API key in the `X-API-Key` header." if _secured else ""),
    openapi_url="/openapi.json",
    redirect_slashes=False,  # /score/ is no route (404), not a redirect a client may not follow
    docs_url=None,
    redoc_url=None,
)
api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from CLM_API_KEYS or "
                       "CLM_API_KEYS_FILE (`Authorization: Bearer KEY` is taken too).")
# The keys are checked by ApiKeyMiddleware; this declares the scheme in the spec when keys are on.
KEYED = [Security(api_key)] if _secured else []


def _context(context: ContextIn | None) -> Context | None:
    return None if context is None else Context(intent=context.intent, channel=context.channel)


@bentoml.service(
    name="clm",
    workers=int(os.environ.get("CLM_WORKERS", "1")),
    logging={"access": {"enabled": False}},
    traffic={"timeout": 60},
)
@bentoml.asgi_app(app, path="/")
class Clm:
    """Scores and next-best actions for one customer at a time, for CRM systems."""

    def __init__(self) -> None:
        # Feast, MLflow and the models' libraries load here, in the worker: BentoML's arbiter
        # imports this module only to read the service's definition (seconds saved at start).
        from serving.runtime import Runtime, poll

        self.runtime = Runtime(WORKSPACE, os.environ.get("CLM_TRACKING_URI") or None, CATALOGUE, VOCABULARY)
        self._stop = threading.Event()
        every = float(os.environ.get("CLM_RELOAD_SECONDS", "5"))
        threading.Thread(target=poll, args=(self.runtime, every, self._stop), daemon=True, name="clm-reload").start()
        DRAIN.install()

    def __is_ready__(self) -> bool:
        return not DRAIN.draining.is_set() and self.runtime.ready()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()

    @app.post("/score", response_model=ScoreResponse, responses=_with_feedback_link(_errors(400, 404, 413, 415, 422, 503)),
              dependencies=KEYED, operation_id="score")
    def score(self, request: ScoreBody) -> dict:
        """One customer's churn and upsell probability, current and predicted stage, CLV and
        up to max_actions recommended actions with their value and reasons."""
        answers, unknown = self.runtime.answer_ids([request.customer_id], _context(request.context),
                                                   request.max_actions)
        if unknown:
            raise RequestError(404, f"customer {request.customer_id!r} has no features in the online store: not a "
                               "customer at its snapshot date, or the store was loaded before they signed up "
                               "(`clm features materialize`).", "customer_id")
        return answers[0]

    @app.post("/score_batch", response_model=BatchResponse, responses=_errors(400, 413, 415, 422, 503),
              dependencies=KEYED, operation_id="score_batch")
    def score_batch(self, request: BatchBody) -> dict:
        """The same as /score for up to 1,000 customers. `results` follow the order asked (a
        repeated id answered at each place, with the same decision); ids without features are
        listed once each in `unknown`."""
        asked = list(dict.fromkeys(request.customer_ids))
        answers, unknown = self.runtime.answer_ids(asked, _context(request.context), request.max_actions)
        by_id = {a["customer_id"]: a for a in answers}
        return {"results": [by_id[c] for c in request.customer_ids if c in by_id], "unknown": unknown}

    @app.post("/score_features", response_model=ScoreResponse,
              responses=_with_feedback_link(_errors(400, 404, 413, 415, 422)), dependencies=KEYED, operation_id="score_features")
    def score_features(self, request: FeaturesBody) -> dict:
        """Scores and actions for features the caller holds (fresher than the online store's).
        Each feature is checked against its range and the others (e.g. sessions in 7 days
        at most those in 30); the one at fault is named."""
        when = None if request.as_of is None else pd.Timestamp(request.as_of).tz_convert("UTC")
        features = request.features
        values = features if isinstance(features, dict) else features.model_dump(exclude_unset=True)
        return self.runtime.answer_features(request.customer_id, values, when, _context(request.context),
                                            request.max_actions)

    @app.post("/feedback", response_model=FeedbackResponse, responses=_errors(400, 404, 409, 413, 415, 422, 503),
              dependencies=KEYED, operation_id="feedback")
    def feedback(self, request: FeedbackRequest) -> FeedbackResponse:
        """Record that a decision was accepted or rejected (the decision journal): 404 for an
        id clm never gave, 409 for an action the decision did not recommend."""
        try:
            self.runtime.feedback(request.decision_id, request.response, request.action)
        except UnknownDecision as err:
            raise RequestError(404, str(err), "decision_id") from None
        except NotRecommended as err:
            raise RequestError(409, str(err), "action") from None
        except JournalUnavailable as err:
            raise RequestError(503, str(err), None) from None
        except ClmError as err:
            raise RequestError(422, str(err), "decision_id") from None
        return FeedbackResponse(decision_id=request.decision_id, response=request.response, action=request.action,
                                recorded=True)

    @app.post("/consent", response_model=ConsentResponse, responses=_errors(400, 404, 413, 415, 422, 503),
              dependencies=KEYED, operation_id="consent")
    def consent(self, request: ConsentRequest) -> ConsentResponse:
        """Record a customer's consent change for a channel (a withdrawal: granted false):
        honoured by the next answer of every worker and by the next nightly batch."""
        try:
            self.runtime.consent(request.customer_id, request.channel, request.granted)
        except JournalUnavailable as err:
            raise RequestError(503, str(err), None) from None
        return ConsentResponse(customer_id=request.customer_id, channel=request.channel, granted=request.granted,
                               recorded=True)


# ------------------------------------------------------------------ errors: one shape
def _field(location: tuple[int | str, ...]) -> str | None:
    parts = [str(p) for p in location if p != "body"]
    return ".".join(parts) or None


@app.exception_handler(RequestValidationError)
def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    field = _field(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        return JSONResponse(ErrorBody(error=f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'unreadable')})",
                                      field=None).model_dump(), status_code=400)
    if field == "customer_ids" and first.get("type") == "too_long":
        return JSONResponse(ErrorBody(error=f"customer_ids holds more than {MAX_BATCH:,} ids: at most {MAX_BATCH:,} a "
                                      "request (split the list)", field=field).model_dump(), status_code=422)
    if first.get("type") == "missing" and field is None:
        message = "send a JSON object with the fields the OpenAPI spec (/openapi.json) lists"
    elif first.get("type") == "extra_forbidden":
        message = f"{field} is not a field of this request (see /openapi.json)"
    else:
        message = f"{field or 'the body'}: {first.get('msg', 'invalid')}"
    more = len(exc.errors()) - 1
    return JSONResponse(ErrorBody(error=message + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""),
                                  field=field).model_dump(), status_code=422)


@app.exception_handler(RequestError)
def _refused(_: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse(ErrorBody(error=str(exc), field=exc.field).model_dump(), status_code=exc.status)


@app.exception_handler(StoreUnavailable)
def _store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
    return JSONResponse(ErrorBody(error=str(exc), field=None).model_dump(), status_code=503,
                        headers={"retry-after": "5"})


@app.exception_handler(HTTPException)
def _http(request: Request, exc: HTTPException) -> JSONResponse:
    error = str(exc.detail)
    if exc.status_code == 405:
        error = f"{request.method} is not allowed on {request.url.path}: use {(exc.headers or {}).get('allow', 'POST')}"
    return JSONResponse(ErrorBody(error=error, field=None).model_dump(), status_code=exc.status_code,
                        headers=exc.headers)


# ------------------------------------------------------------------ the docs page
DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clm API {_version()}</title>
<link rel="stylesheet" href="{SWAGGER_ASSETS}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{SWAGGER_ASSETS}/swagger-ui-bundle.js"></script><script src="/docs.js"></script></body></html>
"""
DOCS_SCRIPT = ('window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", validatorUrl: null, '
               'deepLinking: true});\n')
# Nothing on the page may come from elsewhere.
SAME_ORIGIN = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"}


@app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
def docs_page() -> HTMLResponse:
    return HTMLResponse(DOCS_PAGE, headers=SAME_ORIGIN)


@app.get("/docs.js", include_in_schema=False)
def docs_script() -> Response:
    return Response(DOCS_SCRIPT, media_type="text/javascript", headers=SAME_ORIGIN)


@app.get("/docs.json", include_in_schema=False)
def old_spec_address() -> JSONResponse:
    """The spec where clm served it before /openapi.json."""
    return JSONResponse(app.openapi())


# @bentoml.service made Clm a bentoml.Service; mypy does not apply class decorators.
_service = cast("bentoml.Service[Clm]", Clm)
# BentoML wraps the first added outermost: the guard shapes and logs the key check's 401 too.
_service.add_asgi_middleware(Guard, max_body_bytes=int(os.environ.get("CLM_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
                             json_routes=ROUTES, body_seconds=float(os.environ.get("CLM_BODY_SECONDS", BODY_SECONDS)))
if _secured:
    _service.add_asgi_middleware(ApiKeyMiddleware, hashes=_hashes, protected=ROUTES)
_service.add_asgi_middleware(CloseWhileDraining, drain=DRAIN)
