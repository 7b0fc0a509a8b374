"""An Airflow DAG for clm's nightly work (an example to copy into your DAGs folder; clm
itself does not need Airflow). Each task calls the CLI, so the same commands run from
cron or any other scheduler:

  retrain  `clm retrain`: features, every model, the gate, the online store, the batch.
           Idempotent and safe to kill: a retry or a rerun finishes what a failed run left.
  monitor  `clm monitor`: exit code 4 when a threshold is crossed, which fails the task so
           that Airflow's alerting (email, Slack callback) tells the owner.

Set CLM_WORKSPACE (and MLFLOW_TRACKING_URI for a tracking server) in the workers'
environment or in `env` below; CLM_ACTOR names the scheduler in the audit trail of
champion changes (`clm models history MODEL`).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

WORKSPACE = os.environ.get("CLM_WORKSPACE", "/srv/clm/workspace")
ENV = {"CLM_WORKSPACE": WORKSPACE, "CLM_ACTOR": "airflow:clm_nightly", "PATH": os.environ.get("PATH", "")}

with DAG(
    dag_id="clm_nightly",
    description="Retrain, rescore and monitor clm every night, after the day's data has landed.",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # clm's workspace lock refuses a second run anyway
    default_args={"retries": 2, "retry_delay": timedelta(minutes=15)},
) as dag:
    retrain = BashOperator(task_id="retrain", bash_command="clm retrain", env=ENV)
    monitor = BashOperator(task_id="monitor", bash_command="clm monitor --html monitor.html", env=ENV, cwd=WORKSPACE)
    retrain >> monitor
