"""The real-time API's request and response bodies (pydantic): what the OpenAPI page shows,
with examples, and what every request is validated against."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from features.groups import FLOAT, Feature
from serving.vocabulary import PRICE_SLACK, Vocabulary
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    create_model,
    field_validator,
)

MAX_BATCH = 1_000
CustomerId = Annotated[str, Field(min_length=1, max_length=128, examples=["C0000042"],
                                  description="The customer's id, as in the raw data.")]
def _whole_number(value: object) -> object:
    """JSON Schema's integers include 3.0: taken as 3 (a strict model would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


MaxActions = Annotated[int, Field(ge=1, le=7, description="How many recommended actions to return, best first."),
                       BeforeValidator(_whole_number)]
FeatureValues = Annotated[dict[str, StrictFloat | StrictInt | StrictStr | None], Field(
    max_length=500, description="Feature name -> value (numbers for numeric features, text for the others); "
    "a feature left out is missing.", examples=[{"tenure_days": 400, "plan": "basic", "price": 29.0,
                                                  "days_since_last_activity": 34, "is_subscribed": 1}])]


class Strict(BaseModel):
    """A request body: a field the API does not know is refused (422), at any depth, and
    values are taken as the spec types them (no "3" for 3, no 0 for a date)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ContextIn(Strict):
    """What the caller knows about the moment. Intents are the catalogue's (`context.intent`)."""

    channel: Literal["email", "phone", "in_app"] | None = Field(
        None, description="The channel the customer is on right now.", examples=["phone"])
    intent: str | None = Field(
        None, max_length=64, description="Why they are in touch, e.g. `cancelling`, `upgrading`, `complaining`.",
        examples=["cancelling"])


class Recommended(BaseModel):
    action: str = Field(description="Action id from the catalogue; `none` when no action pays or none is allowed.",
                        examples=["retention_offer"])
    expected_value: float = Field(description="Expected incremental value after costs (currency units).", examples=[84.2])
    retention_value: float = Field(description="Value from a lower chance of leaving.", examples=[96.0])
    upgrade_value: float = Field(description="Value from a higher chance of upgrading.", examples=[0.0])
    cost: float = Field(description="Contact cost and discount.", examples=[11.8])
    score: float = Field(description="What ranks the actions: value x business weight x context weight.",
                         examples=[252.6])
    reasons: list[str] = Field(description="Why, in words: the value and its parts, then the score's top drivers.",
                               examples=[["retention_offer: expected value 84.20 (96.00 from fewer leaving, minus "
                                          "11.80 cost)", "no sessions in 34 days"]])


class ScoreResponse(BaseModel):
    customer_id: str = Field(examples=["C0000042"])
    churn_probability: float | None = Field(description="P(churn within the horizon); null outside the model "
                                            "population (e.g. a cancelled contract).", examples=[0.31])
    upsell_probability: float | None = Field(description="P(upgrade within the horizon).", examples=[0.04])
    stage: str = Field(description="Lifecycle stage now, by the stage rules.", examples=["at_risk"])
    predicted_stage: str | None = Field(description="The stage the model expects at the horizon.", examples=["dormant"])
    stage_probabilities: dict[str, float] | None = Field(
        description="Probability of each stage at the horizon.", examples=[{"engaged": 0.4, "dormant": 0.35, "churned": 0.25}])
    clv: float | None = Field(description="Expected value over the CLV window (currency units).", examples=[420.5])
    in_population: bool = Field(description="Whether the models score this customer (a live contract, or a "
                                "purchase for a transactions-only business).", examples=[True])
    actions: list[Recommended] = Field(description="Recommended actions, best first (at most max_actions).")
    decision_id: str = Field(description="This answer's own id, unique, logged with what it recommended: report "
                             "feedback with it (`POST /feedback`).",
                             examples=["api-5f1c0e9d2b7a4c3e8f6a1b2c3d4e5f60"])
    feature_timestamp: datetime = Field(description="When the features were computed (freshness).",
                                        examples=["2026-01-01T00:00:00Z"])
    model_versions: dict[str, str | None] = Field(
        description="The champion version of each model that answered.",
        examples=[{"churn": "3", "upsell": "2", "stage": "1", "clv": "1", "uplift": "4"}])


class BatchResponse(BaseModel):
    results: list[ScoreResponse]
    unknown: list[str] = Field(description="Ids with no features in the online store.", examples=[["C9999999"]])


class FeedbackResponse(BaseModel):
    decision_id: str = Field(examples=["api-5f1c0e9d2b7a4c3e8f6a1b2c3d4e5f60"])
    response: Literal["accepted", "rejected"]
    action: str | None = Field(default=None, description="The action acted on, as reported (null: the first).",
                               examples=["retention_offer"])
    recorded: bool = Field(examples=[True])


# ------------------------------------------------------------------ requests
DecisionId = Annotated[str, Field(min_length=1, max_length=200, examples=["api-5f1c0e9d2b7a4c3e8f6a1b2c3d4e5f60"],
                                  description="The decision_id of a /score answer or of the nightly batch's output.")]
_DATETIME = TypeAdapter(datetime)
# The instants pandas (and so every later step) can hold.
# A date from 1900 to 2199 (pandas holds 1677 to 2262): stated in the spec as a pattern on the year.
FIRST_YEAR, LAST_YEAR = 1900, 2199
YEARS_PATTERN = r"^(19|20|21)\d\d-"


class ScoreRequest(Strict):
    customer_id: CustomerId
    context: ContextIn | None = Field(None, description="The moment: intent and channel (null: none known).")
    max_actions: MaxActions = 3


class BatchRequest(Strict):
    customer_ids: list[CustomerId] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"Up to {MAX_BATCH:,} customer ids; a repeated id is "
        "answered at each place it is asked.", examples=[["C0000042", "C0000043"]])
    context: ContextIn | None = Field(None, description="The moment, the same for every customer asked.")
    max_actions: MaxActions = 3


class FeaturesRequest(Strict):
    customer_id: CustomerId
    features: FeatureValues
    as_of: datetime | None = Field(
        None, description="When the features describe the customer (default: now; without a zone: UTC); contacts "
        "before it count for cooldowns. From 1900 to 2199.", examples=["2026-01-01T00:00:00Z"],
        json_schema_extra={"pattern": YEARS_PATTERN})
    context: ContextIn | None = None
    max_actions: MaxActions = 3

    @field_validator("as_of", mode="before")
    @classmethod
    def _a_date_time_text(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or not re.match(YEARS_PATTERN, value):
            raise ValueError(f"must be an ISO 8601 date-time text from the years {FIRST_YEAR} to {LAST_YEAR}, e.g. "
                             "2026-01-01T00:00:00Z")
        return _DATETIME.validate_python(value)

    @field_validator("as_of")
    @classmethod
    def _within_pandas_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise ValueError(f"must lie in the years {FIRST_YEAR} to {LAST_YEAR}")
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class FeedbackRequest(Strict):
    decision_id: DecisionId
    response: Literal["accepted", "rejected"] = Field(description="What the customer did with the recommendation.")
    action: str | None = Field(None, max_length=200, examples=["retention_offer"],
                               description="The recommended action the CRM acted on (default: the first).")


class ConsentRequest(Strict):
    customer_id: CustomerId
    channel: Literal["email", "phone"] = Field(description="The channel the consent is for (in-app needs none).")
    granted: bool = Field(description="false: the customer withdrew consent; true: gave it.", examples=[False])


class ConsentResponse(BaseModel):
    customer_id: str = Field(examples=["C0000042"])
    channel: Literal["email", "phone"]
    granted: bool
    recorded: bool = Field(examples=[True], description="Honoured by the next answer of every worker and the next "
                                                        "batch.")


# ------------------------------------------------------------------ errors
class ErrorBody(BaseModel):
    """Every error the API answers, whatever its status: what is wrong and what to do, and
    the request field at fault (dotted, e.g. `context.intent`; null when no field is)."""

    error: str = Field(examples=["customer 'C9' has no features in the online store"])
    field: str | None = Field(examples=["customer_id"])


# ------------------------------------------------------------------ this workspace's vocabulary
@dataclass(frozen=True)
class RequestModels:
    score: type[ScoreRequest]
    batch: type[BatchRequest]
    features: type[FeaturesRequest]


def _literal(values: tuple[str, ...]) -> Any:
    return Literal.__getitem__(values)


def _feature_field(feature: Feature, vocabulary: Vocabulary) -> tuple[Any, Any]:
    required = feature.name == vocabulary.required_feature
    default = ... if required else None
    description = feature.description + (" Required: it says whether the models score the customer." if required
                                         else "")
    if feature.kind != FLOAT:
        if feature.name == "plan" and vocabulary.plans:
            return _literal(tuple(sorted(vocabulary.plans))) | None, Field(default, description=description)
        return str | None, Field(default, max_length=200, description=description)
    values = feature.values
    high = values.high
    if feature.name == "price" and vocabulary.highest_price is not None:
        high = min(high, PRICE_SLACK * vocabulary.highest_price)
    kind: Any = float if required else float | None
    return kind, Field(default, ge=values.low, le=high, multiple_of=1 if values.whole else None,
                       description=description)


def request_models(vocabulary: Vocabulary) -> RequestModels:
    """The request bodies, typed for this workspace (see Vocabulary): what the spec shows
    and what FastAPI validates, from the same models."""
    if not vocabulary.intents and not vocabulary.features:
        return RequestModels(ScoreRequest, BatchRequest, FeaturesRequest)
    context = ContextIn
    if vocabulary.intents:
        context = create_model("ContextIn", __base__=ContextIn, __doc__=ContextIn.__doc__, intent=(
            _literal(vocabulary.intents) | None, Field(None, description="Why they are in touch: one of the "
                                                       "catalogue's intents.", examples=[vocabulary.intents[0]])))
    maybe_context: Any = context | None
    score = create_model("ScoreRequest", __base__=ScoreRequest, context=(maybe_context, Field(None)))
    batch = create_model("BatchRequest", __base__=BatchRequest, context=(maybe_context, Field(None)))
    features_type: Any = FeatureValues
    if vocabulary.features:
        fields: dict[str, Any] = {f.name: _feature_field(f, vocabulary) for f in vocabulary.features}
        features_type = Annotated[create_model(
            "CustomerFeatures", __base__=Strict, __doc__="The customer's features as the CRM knows them now; a "
            "feature left out is missing. Besides each one's range, a shorter window never exceeds a longer one "
            "(e.g. sessions_7d <= sessions_30d) and a plan's price is at most twice its highest list price.",
            **fields),
            Field(examples=[vocabulary.example] if vocabulary.example else None)]
    features = create_model("FeaturesRequest", __base__=FeaturesRequest, context=(maybe_context, Field(None)),
                            features=(features_type, ...))
    return RequestModels(score, batch, features)
