"""The Feast feature repository: entities, sources, views and services.

Definitions are built from `features.groups` for one workspace (sources point at its
snapshot files), then applied with `features.store.apply`. Sections follow Feast's
credit-score tutorial: entities, sources, views, services.
"""
from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, String
from feast.value_type import ValueType

from features.groups import FLOAT, FeatureGroup

# How long a snapshot stays the latest value: longer than the monthly snapshot interval,
# so a point-in-time join always finds the previous snapshot, and no longer.
SNAPSHOT_TTL = timedelta(days=40)

# ------------------------------------------------------------------ entities
customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A customer of the business, by the id in the raw customers table.",
)


# ------------------------------------------------------------------ sources
def snapshot_source(group: FeatureGroup, glob: str) -> FileSource:
    """The group's snapshot files (one Parquet file per as-of date)."""
    return FileSource(
        name=f"{group.name}_snapshots",
        path=glob,
        timestamp_field="event_timestamp",
        description=f"Snapshots of the {group.name} group: {group.description}",
    )


# ------------------------------------------------------------------ views
def feature_view(group: FeatureGroup, source: FileSource) -> FeatureView:
    return FeatureView(
        name=group.name,
        entities=[customer],
        ttl=SNAPSHOT_TTL,
        schema=[
            Field(name=f.name, dtype=Float64 if f.kind == FLOAT else String, description=f.description)
            for f in group.features
        ],
        source=source,
        online=True,
        description=group.description,
    )


# ------------------------------------------------------------------ services
# Each model's feature list lives here and only here: the groups it reads.
# `attributes`: the business's own columns of its customers table, when it brought any.
MODEL_GROUPS: dict[str, tuple[str, ...]] = {
    "churn": ("profile", "rfm", "engagement", "support", "billing", "voice", "marketing", "advocacy", "attributes"),
    "upsell": ("profile", "rfm", "engagement", "support", "billing", "voice", "marketing", "advocacy", "attributes"),
    "stage": ("profile", "rfm", "engagement", "support", "billing", "voice", "marketing", "advocacy", "attributes"),
    "clv": ("profile", "rfm", "engagement", "support", "billing", "attributes"),
    "uplift": ("profile", "rfm", "engagement", "support", "billing", "voice", "marketing", "advocacy", "attributes"),
}


def feature_services(views: dict[str, FeatureView]) -> list[FeatureService]:
    """One service per model, over the views this workspace has."""
    return [
        FeatureService(
            name=f"{model}_features",
            features=[views[g] for g in groups if g in views],
            description=f"Features of the {model} model.",
        )
        for model, groups in MODEL_GROUPS.items()
    ]
