"""The action catalogue: which actions exist, to whom they may go, how often, at what cost.

Loaded from YAML (`decisions/catalogue.yaml` by default, `--catalogue FILE` otherwise) and
validated on load: an error names the entry and the field. Action ids are the business's
own (`spring_email`, `voucher_10`: letters, digits, '_' and '-'), the names its campaign
history gives them; `none` is the deliberate no-contact. The simulator's six actions are
only its default catalogue (`catalogue.yaml` beside this file).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clm.domain import ACTION_ID_PATTERN, NO_ACTION, Stage
from clm.errors import ClmError
from clm.files import check_path_length, read_yaml_mapping
from clm.limits import COUNT, DAYS, MONEY, VALUE_MONTHS, WEIGHT

DEFAULT_CATALOGUE = Path(__file__).with_name("catalogue.yaml")


class _Strict(BaseModel):
    # Every number finite (`.inf` or `.nan` would reach the allocation's solver) and within
    # its bound (clm.limits): a typo is named on load, not found by the solver.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Range(_Strict):
    """Inclusive bounds; a bound left out does not restrict."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Eligibility(_Strict):
    """Who may get an action; a field left out does not restrict."""

    stages: list[Stage] | None = None
    segments: list[str] | None = None
    tenure_days: Range | None = None
    churn_probability: Range | None = None
    upsell_probability: Range | None = None

    @model_validator(mode="after")
    def _probabilities_between_0_and_1(self) -> "Eligibility":
        for name in ("churn_probability", "upsell_probability"):
            bounds = getattr(self, name)
            outside = [v for v in (bounds.min, bounds.max) if v is not None and not 0 <= v <= 1] if bounds else []
            if outside:
                raise ValueError(f"{name} bounds must lie between 0 and 1 (got {outside[0]}): the action could "
                                 "never, or always, apply")
        return self


class Discount(_Strict):
    """share off the next `bills` bills: costs share x bills x the monthly price."""

    share: float = Field(gt=0, le=1)
    bills: int = Field(ge=1, le=VALUE_MONTHS.high)


Target = Literal["retain", "upgrade", "activate", "refer", "win_back", "none"]


class ActionEntry(_Strict):
    """One action of the catalogue (fields: see catalogue.yaml's header)."""

    id: str = Field(pattern=f"^{ACTION_ID_PATTERN}$")
    description: str = Field(min_length=1)
    channel: Literal["email", "phone", "in_app", "none"]
    unit_cost: float = Field(ge=MONEY.low, le=MONEY.high)
    discount: Discount | None = None
    target: Target
    eligibility: Eligibility = Eligibility()
    cooldown_days: int = Field(ge=0, le=DAYS.high)
    daily_capacity: int | None = Field(default=None, ge=0, le=COUNT.high)
    weight: float = Field(default=1.0, gt=WEIGHT.low, le=WEIGHT.high)

    @model_validator(mode="after")
    def _nothing_is_free_of_rules(self) -> "ActionEntry":
        if (self.id == NO_ACTION) != (self.channel == "none"):
            raise ValueError("the channel is 'none' for the action none, and only for it")
        return self

    def cost(self, monthly_price: float | np.ndarray) -> float | np.ndarray:
        """What one contact costs: the unit cost and any discount granted (per customer,
        given an array of monthly prices)."""
        discount = self.discount.share * self.discount.bills * monthly_price if self.discount else 0.0
        return self.unit_cost + discount


class ContactPolicy(_Strict):
    """At most max_contacts contacts (any action but none) per customer within window_days."""

    max_contacts: int = Field(ge=0, le=COUNT.high)
    window_days: int = Field(ge=1, le=DAYS.high)


class ValueSettings(_Strict):
    """How outcomes are priced (`decisions.value`): keeping a customer is worth keep_months
    of their monthly revenue; an upgrade, upgrade_months of the price difference; a purchase
    won from a customer with no revenue on record (who never bought, or not for a year),
    purchase_value (the business's typical first order); all of it times margin, the share
    of revenue the business keeps (1: value in revenue)."""

    keep_months: float = Field(default=12.0, gt=VALUE_MONTHS.low, le=VALUE_MONTHS.high)
    upgrade_months: float = Field(default=12.0, ge=VALUE_MONTHS.low, le=VALUE_MONTHS.high)
    purchase_value: float = Field(default=0.0, ge=MONEY.low, le=MONEY.high)
    margin: float = Field(default=1.0, gt=0.0, le=1.0)


class ContextWeights(_Strict):
    """What the caller says about the moment multiplies an action's weight.

    intent: for an intent the caller names (e.g. `cancelling`), a weight per action target;
    same_channel: the weight of actions on the channel the customer is on right now."""

    intent: dict[str, dict[Target, float]] = Field(default_factory=dict)
    same_channel: float = Field(default=1.0, gt=WEIGHT.low, le=WEIGHT.high)

    @model_validator(mode="after")
    def _positive(self) -> "ContextWeights":
        for intent, weights in self.intent.items():
            bad = {t: w for t, w in weights.items() if not WEIGHT.low < w <= WEIGHT.high}
            if bad:
                raise ValueError(f"intent {intent}: weights must be above {WEIGHT.low:g} and at most "
                                 f"{WEIGHT.high:g}, got {bad}")
        return self


@dataclass(frozen=True)
class Context:
    """What the caller knows about the moment: an intent named in the catalogue's
    `context.intent` (e.g. `cancelling`), and the channel the customer is on."""

    intent: str | None = None
    channel: str | None = None


class Catalogue(_Strict):
    contact_policy: ContactPolicy
    actions: list[ActionEntry]
    value: ValueSettings = ValueSettings()
    context: ContextWeights = ContextWeights()

    @model_validator(mode="after")
    def _one_entry_per_action_and_none_present(self) -> "Catalogue":
        ids = [a.id.lower() for a in self.actions]  # `Email` and `email` would name one column twice
        repeated = sorted({a for a in ids if ids.count(a) > 1})
        if repeated:
            raise ValueError(f"action(s) {', '.join(repeated)} appear more than once")
        if NO_ACTION not in ids:
            raise ValueError("the action 'none' (do nothing) must be in the catalogue")
        return self

    def entry(self, action: str) -> ActionEntry:
        return next(a for a in self.actions if a.id == action)

    @property
    def lookback_days(self) -> int:
        """How far back the contact rules read the history: the contact policy's window and
        the longest cooldown. An older contact changes no decision (it is outside the window
        and longer ago than any cooldown)."""
        return max([self.contact_policy.window_days, *(a.cooldown_days for a in self.actions)])

    @property
    def contact_actions(self) -> list[ActionEntry]:
        return [a for a in self.actions if a.id != NO_ACTION]

    @property
    def contact_ids(self) -> list[str]:
        """The contact actions' ids, in the catalogue's order: the column order of every
        (customers, actions) array the funnel reads and writes."""
        return [a.id for a in self.contact_actions]

    @property
    def capacities(self) -> np.ndarray:
        """Per contact action, its daily capacity (inf where unlimited)."""
        return np.array([np.inf if a.daily_capacity is None else a.daily_capacity for a in self.contact_actions],
                        dtype=float)


def load_catalogue(path: Path | None = None) -> Catalogue:
    """The catalogue at `path` (default: the one shipped with clm), validated; a ClmError
    names the file, the entry and the field of every problem."""
    path = check_path_length(Path(path), "Catalogue") if path is not None else DEFAULT_CATALOGUE
    if not path.is_file():
        raise ClmError(f"Catalogue {path} not found: pass --catalogue with a YAML file (see {DEFAULT_CATALOGUE}).")
    raw = read_yaml_mapping(path, "Catalogue", "'contact_policy' and 'actions'")
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as err:
        problems = [f"  - {_where(raw, e['loc'])}: {e['msg']}" for e in err.errors()]
        raise ClmError(f"Catalogue {path} has {len(problems)} problem(s):\n" + "\n".join(problems)) from None


def _where(raw: dict, loc: tuple) -> str:
    """A readable location: actions[2] (success_call).unit_cost."""
    parts: list[str] = []
    node: object = raw
    for key in loc:
        if isinstance(key, int):
            entry = node[key] if isinstance(node, list) and key < len(node) else None
            name = entry.get("id") if isinstance(entry, dict) else None
            parts[-1] += f"[{key}]" + (f" ({name})" if name else "")
            node = entry
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "catalogue"
