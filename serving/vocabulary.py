"""What a request may name and send in this workspace (`Vocabulary`, from which the request
models and the spec are made: `serving.schemas.request_models`), and the checks of a
customer's features sent to `POST /score_features` (`FeatureRules`): the rules the features'
own definitions give (`features.groups`: each feature's kind and range, the pairs where one
never exceeds the other) and the workspace's data (the plans on record and their list
prices, the feature the model population is read from). The first problem found is raised
as a 422 naming the field."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.catalogue import Catalogue
from decisions.population import in_population, population_feature
from decisions.value import plan_list_prices
from features.groups import ANY_NUMBER, AT_MOST, FLOAT, Feature, Range
from features.snapshots import group_dir, workspace_groups

# A price above this many times a plan's highest list price on record is taken for a mistake
# (a new price list is allowed for; a monthly price 1,000 times the usual is not).
PRICE_SLACK = 2.0


@dataclass(frozen=True)
class Vocabulary:
    """What a request may name in this workspace: the catalogue's intents, the features the
    online store serves (their kinds and ranges), the feature that says whether a customer
    is scored (required in /score_features), the plans on record (name -> lowest and highest
    list price), and an example of features. Empty: not known (a Bento built without a
    workspace); then any name passes the schema and the service checks it."""

    intents: tuple[str, ...] = ()
    features: tuple[Feature, ...] = ()
    required_feature: str | None = None
    plans: dict[str, tuple[float, float]] = field(default_factory=dict)
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def highest_price(self) -> float | None:
        return max((hi for _, hi in self.plans.values()), default=None)


def vocabulary_of(workspace: Workspace, catalogue: Catalogue) -> Vocabulary:
    """This workspace's Vocabulary (only the intents if it holds no data yet)."""
    intents = tuple(sorted(catalogue.context.intent))
    if not workspace.raw_dir.is_dir():
        return Vocabulary(intents=intents)
    contractual = workspace.read_manifest().business == "contractual"
    features = tuple(f for group in workspace_groups(workspace) for f in group.features)
    names = {f.name for f in features}
    plans = plan_list_prices(workspace)
    example: dict[str, Any] = {"tenure_days": 400.0, "days_since_last_activity": 34.0, "is_subscribed": 1.0,
                               "frequency_total": 3.0}
    if plans:
        plan = sorted(plans)[0]
        example.update(plan=plan, price=plans[plan][1])
    return Vocabulary(intents, features, population_feature(contractual), plans,
                      {k: v for k, v in example.items() if k in names})


def example_customer(workspace: Workspace) -> str:
    """A customer the online store knows and the models score, for the examples printed."""
    latest = max(group_dir(workspace, "profile").glob("*.parquet"), default=None)
    if latest is None:
        return "C0000001"
    profile = pd.read_parquet(latest, columns=["customer_id", "is_subscribed"])
    contractual = workspace.read_manifest().business == "contractual"
    rfm = group_dir(workspace, "rfm") / latest.name
    frame = profile if contractual or not rfm.exists() else pd.read_parquet(rfm, columns=["customer_id",
                                                                                          "frequency_total"])
    live = frame["customer_id"][in_population(frame, contractual)]
    return str(live.iloc[0] if len(live) else frame["customer_id"].iloc[0])


class FeatureProblem(ClmError):
    """A caller's feature that cannot be: the message, and the field (`features.NAME`)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FeatureRules:
    """kinds: every feature the online store serves -> FLOAT or STRING; the rest from the
    Vocabulary (ranges by feature; without one, any finite number)."""

    kinds: dict[str, str]
    vocabulary: Vocabulary

    @cached_property
    def ranges(self) -> dict[str, Range]:
        return {f.name: f.values for f in self.vocabulary.features}

    def check(self, values: dict[str, Any]) -> None:
        """Raise FeatureProblem for the first feature that cannot be as sent."""
        ranges = self.ranges
        for name, value in values.items():
            kind = self.kinds.get(name)
            where = f"features.{name}"
            if kind is None:
                raise FeatureProblem(f"{where} is not a feature of this workspace (see /openapi.json)", where)
            if value is None:
                continue
            if kind == FLOAT:
                if isinstance(value, str | bool) or not isinstance(value, int | float):
                    raise FeatureProblem(f"{where} must be a number, not {value!r}", where)
                problem = ranges.get(name, ANY_NUMBER).problem(float(value))
                if problem:
                    raise FeatureProblem(f"{where} {problem} (got {value!r})", where)
            elif not isinstance(value, str):
                raise FeatureProblem(f"{where} must be text, not {value!r}", where)
        required = self.vocabulary.required_feature
        if required in self.kinds and values.get(required) is None:
            raise FeatureProblem(f"features.{required} is required: it says whether the models score the customer",
                                 f"features.{required}")
        self.check_together(values)

    def check_together(self, values: dict[str, Any]) -> None:
        """The rules between features, which an OpenAPI schema cannot state: a shorter
        window within a longer one, a price within reach of its plan's."""
        for small, large in AT_MOST:
            a, b = values.get(small), values.get(large)
            if isinstance(a, int | float) and isinstance(b, int | float) and a > b:
                raise FeatureProblem(f"features.{small} ({a:g}) cannot exceed features.{large} ({b:g})",
                                     f"features.{small}")
        self._check_plan(values)

    def _check_plan(self, values: dict[str, Any]) -> None:
        plans = self.vocabulary.plans
        if not plans:
            return
        plan, price = values.get("plan"), values.get("price")
        if isinstance(plan, str) and plan not in plans:
            raise FeatureProblem(f"features.plan {plan!r} is not a plan on record ({', '.join(sorted(plans))})",
                                 "features.plan")
        if isinstance(price, int | float) and not isinstance(price, bool) and math.isfinite(price):
            highest = plans[plan][1] if isinstance(plan, str) else max(hi for _, hi in plans.values())
            if price > PRICE_SLACK * highest:
                said = f"plan {plan!r}'s" if isinstance(plan, str) else "any plan's"
                raise FeatureProblem(f"features.price {price:g} is over {PRICE_SLACK:g} times {said} highest list "
                                     f"price on record ({highest:g})", "features.price")
