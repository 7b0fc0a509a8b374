"""Lifecycle stages, the proactive-action catalogue and raw table names.

These ids are relied on by automation and stored in data: never rename one.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """Lifecycle stage of one customer at one moment (see ../shared/DOMAIN.md)."""

    NEW = "new"
    ONBOARDING = "onboarding"
    ENGAGED = "engaged"
    AT_RISK = "at_risk"
    DORMANT = "dormant"
    CHURNED = "churned"
    ADVOCATE = "advocate"


STAGES: tuple[str, ...] = tuple(s.value for s in Stage)


class Action(StrEnum):
    """Proactive actions of the next-best-action menu; NONE is the deliberate no-contact."""

    NONE = "none"
    RETENTION_OFFER = "retention_offer"
    SUCCESS_CALL = "success_call"
    ONBOARDING_NUDGE = "onboarding_nudge"
    UPGRADE_OFFER = "upgrade_offer"
    REFERRAL_INVITE = "referral_invite"
    WIN_BACK = "win_back"


@dataclass(frozen=True)
class ActionSpec:
    """One action the simulated business sends: its channel (which needs that channel's
    consent) and what it is. What it costs is the decision layer's, in the catalogue
    (`decisions/catalogue.yaml`)."""

    action: Action
    channel: str
    description: str


ACTION_CATALOGUE: dict[Action, ActionSpec] = {
    a.action: a
    for a in (
        ActionSpec(Action.RETENTION_OFFER, "email", "20% off the next three bills"),
        ActionSpec(Action.SUCCESS_CALL, "phone", "a customer-success manager calls"),
        ActionSpec(Action.ONBOARDING_NUDGE, "in_app", "in-app tutorial and tips"),
        ActionSpec(Action.UPGRADE_OFFER, "email", "offer of the next plan up"),
        ActionSpec(Action.REFERRAL_INVITE, "email", "invitation to refer a friend"),
        ActionSpec(Action.WIN_BACK, "email", "win-back campaign for lapsed users"),
    )
}

CONTACT_ACTIONS: tuple[str, ...] = tuple(a.value for a in ACTION_CATALOGUE)
# What a business may call its own actions (`spring_email`, `voucher-10`): letters, digits,
# '_' and '-', starting with a letter or digit. The ids name columns and MLflow metrics.
ACTION_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
NO_ACTION = Action.NONE.value  # the deliberate no-contact, and a campaign's control group
ALL_ACTIONS: tuple[str, ...] = (Action.NONE.value, *CONTACT_ACTIONS)

CHANNELS: tuple[str, ...] = ("email", "phone", "in_app")

# Amounts of money at or above this are taken for a mistake (a sum over a base must stay finite).
MAX_AMOUNT = 1e12
# The scales of a ticket's CSAT and an NPS answer (inclusive): the raw tables' contracts and
# the features built from them both hold to these.
CSAT_SCALE = (1, 5)
NPS_SCALE = (0, 10)
# Consent column in the customers table for each channel (in-app needs none).
CHANNEL_CONSENT_COLUMN: dict[str, str | None] = {
    "email": "consent_email",
    "phone": "consent_phone",
    "in_app": None,
}

SUBSCRIPTION_EVENTS: tuple[str, ...] = ("start", "upgrade", "downgrade", "cancel")
TICKET_SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "urgent")
TRANSACTION_KINDS: tuple[str, ...] = ("subscription", "add_on", "purchase")
TRANSACTION_STATUSES: tuple[str, ...] = ("paid", "failed")


class Table(StrEnum):
    """Raw tables of a workspace; each is stored as WORKSPACE/raw/<name>.parquet."""

    CUSTOMERS = "customers"
    SUBSCRIPTIONS = "subscriptions"
    TRANSACTIONS = "transactions"
    USAGE = "usage"
    TICKETS = "tickets"
    NPS = "nps"
    REFERRALS = "referrals"
    CONSENTS = "consents"
    ACTIONS = "actions"
    # The business's own attributes that change over time (`clm ingest attribute_history`):
    # one row per customer and change, each attribute column holding its value from then on.
    ATTRIBUTE_HISTORY = "attribute_history"
    GROUND_TRUTH = "ground_truth"
    GROUND_TRUTH_EFFECTS = "ground_truth_effects"


# Tables whose rows are events in time: each has a UTC `event_time`.
EVENT_TABLES: tuple[Table, ...] = (
    Table.SUBSCRIPTIONS,
    Table.TRANSACTIONS,
    Table.USAGE,
    Table.TICKETS,
    Table.NPS,
    Table.REFERRALS,
    Table.CONSENTS,
    Table.ACTIONS,
    Table.ATTRIBUTE_HISTORY,
)
# Tables only a simulator can write: the truth behind the data.
TRUTH_TABLES: tuple[Table, ...] = (Table.GROUND_TRUTH, Table.GROUND_TRUTH_EFFECTS)
