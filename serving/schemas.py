"""The real-time API's request and response bodies (pydantic): what the OpenAPI page shows,
with examples, and what every request is validated against."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

MAX_BATCH = 1_000
CustomerId = Annotated[str, Field(min_length=1, max_length=128, examples=["C0000042"],
                                  description="The customer's id, as in the raw data.")]
MaxActions = Annotated[int, Field(ge=1, le=7, description="How many recommended actions to return, best first.")]
FeatureValues = Annotated[dict[str, StrictFloat | StrictInt | StrictStr | None], Field(
    max_length=500, description="Feature name -> value (numbers for numeric features, text for the others); "
    "a feature left out is missing.", examples=[{"tenure_days": 400, "plan": "basic", "price": 29.0,
                                                  "days_since_last_activity": 34, "is_subscribed": 1}])]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
