"""The audit trail of champion changes: who or what moved a model's `champion` alias,
when, to which version, on which figures, and why.

Each change is one event, kept in the MLflow registry beside the alias it explains: a tag
of the registered model, `clm.audit.<milliseconds since 1970>.<event>.<version>`, whose value is
the event as JSON. Tags survive a copied workspace and a tracking server alike, and one
tag per event means no tag ever grows past MLflow's value limit. `clm models history
MODEL` shows them.

Who: `$CLM_ACTOR` when a scheduler sets it (e.g. `airflow:clm_nightly`), else the
operating-system user at the host.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field

from mlflow.tracking import MlflowClient

ACTOR_ENV = "CLM_ACTOR"
TAG_PREFIX = "clm.audit."
PROMOTE, ROLLBACK = "promote", "rollback"
BY_GATE, BY_HAND = "gate", "by hand"


@dataclass(frozen=True)
class ChampionEvent:
    """One change of champion. event: promote or rollback; how: the gate or by hand;
    figures: the new champion's test figures (and the gate's comparison) at the time."""

    event: str
    version: str
    previous: str | None
    how: str
    reason: str
    command: str
    by: str = ""
    at: str = ""
    figures: dict[str, float] = field(default_factory=dict)


def actor() -> str:
    """Who is acting: the scheduler's name, or user@host."""
    named = os.environ.get(ACTOR_ENV, "").strip()
    if named:
        return named
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def record(client: MlflowClient, registered_name: str, event: ChampionEvent) -> ChampionEvent:
    """Store the event (stamped with now and the actor unless given); returns it as stored."""
    millis = time.time_ns() // 1_000_000
    stamped = ChampionEvent(**{
        **asdict(event),
        "at": event.at or time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis / 1000)) + f".{millis % 1000:03d}Z",
        "by": event.by or actor(),
        "figures": {k: float(v) for k, v in event.figures.items()},
    })
    client.set_registered_model_tag(registered_name, f"{TAG_PREFIX}{millis:013d}.{event.event}.{event.version}",
                                    json.dumps(asdict(stamped), sort_keys=True))
    return stamped


def history(client: MlflowClient, registered_name: str) -> list[ChampionEvent]:
    """Every recorded change of champion, oldest first."""
    tags = client.get_registered_model(registered_name).tags
    keys = sorted(k for k in tags if k.startswith(TAG_PREFIX))
    return [ChampionEvent(**json.loads(tags[k])) for k in keys]


def ever_promoted(events: list[ChampionEvent], version: str) -> bool:
    return any(e.event == PROMOTE and e.version == str(version) for e in events)
