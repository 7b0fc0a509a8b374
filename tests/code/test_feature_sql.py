"""The feature SQL is one definition that both DuckDB and Spark can run."""
from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from clm.domain import Table
from features.groups import GROUPS, available_groups
from features.spark import spark_sql


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_every_group_transpiles_to_spark(group):
    sql = spark_sql(group)
    tree = sqlglot.parse_one(sql, read="spark")
    # Every declared feature is an output column, in the declared order, after the keys.
    assert tree.named_selects == ["customer_id", "event_timestamp", *group.feature_names]
    # DuckDB-only functions are gone; Spark's are in, keeping fractions of a second.
    assert "epoch(" not in sql.lower() and "UNIX_MICROS" in sql and "UNIX_TIMESTAMP" not in sql
    # Every literal with a decimal point is a DOUBLE (Spark would make it a DECIMAL).
    tree = sqlglot.parse_one(sql, read="spark")
    decimals = [lit for lit in tree.find_all(exp.Literal) if lit.is_number and "." in lit.this]
    assert decimals and all(isinstance(lit.parent, exp.Cast) and lit.parent.to.is_type("double") for lit in decimals)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_groups_read_only_the_tables_they_declare(group):
    tables = {t.name for t in sqlglot.parse_one(group.sql, read="duckdb").find_all(exp.Table)}
    ctes = {c.alias for c in sqlglot.parse_one(group.sql, read="duckdb").find_all(exp.CTE)}
    raw = tables - ctes - {"snapshots"}
    declared = {t.value for t in group.requires} | ({"subscriptions"} if group.name == "profile" else set())
    assert raw <= declared, raw - declared


def test_transactions_only_workspaces_get_profile_and_rfm():
    names = [g.name for g in available_groups({Table.CUSTOMERS, Table.TRANSACTIONS})]
    assert names == ["profile", "rfm"]
