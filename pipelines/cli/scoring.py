"""Scoring commands: `clm score` (the nightly batch) and `clm serve` (the real-time API)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clm.errors import ClmError
from clm.limits import BODY_BYTES, CHUNK_ROWS, DRAIN_SECONDS, PARTITIONS, RELOAD_SECONDS, SHARE, WORKERS
from clm.output_paths import check_output_dataset
from clm.workspace import Workspace
from decisions.budget import HELP as BUDGET_HELP
from pipelines.cli.common import (
    AsOfOpt,
    CatalogueOpt,
    EngineOpt,
    RichReporter,
    SparkConfOpt,
    SparkMasterOpt,
    TrackingOpt,
    WorkspaceOpt,
    check_budget,
    check_tracking,
    engine_settings,
    say,
    user_errors,
)


@user_errors
def score(
    out: Annotated[Path, typer.Option("--out", help="Parquet dataset (a folder) to write; an earlier output there is replaced.")],
    as_of: AsOfOpt = None,
    budget: Annotated[float | None, typer.Option(help=BUDGET_HELP)] = None,
    catalogue: CatalogueOpt = None,
    exploration: Annotated[float, typer.Option(
        help="Share of decisions replaced by a random allowed action (or none), logged with its propensity.")] = 0.02,
    chunk_rows: Annotated[int, typer.Option(
        help="Customers scored at a time: memory stays flat whatever the size of the base.")] = 100_000,
    engine: EngineOpt = "local",
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    partitions: Annotated[int | None, typer.Option(
        help="With --engine spark: partitions the base is cut into (default: Spark's).")] = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Score and decide for every customer known at --as-of with the champion models:
    the nightly batch.

    Writes a Parquet dataset (a folder of part files, with _manifest.json: models and
    versions, counts, timings, input fingerprint) with customer_id, churn_probability,
    upsell_probability, stage (current, by the stage rules), predicted_stage,
    stage_probabilities (JSON), clv, as_of, action, action_value, action_cost, reasons
    (JSON list of sentences), propensity, explored, model_versions (JSON). It appears
    only when complete; a killed run leaves the earlier output and can be run again.

    Who gets scores: on a transactions-only (non-contractual) workspace, every customer
    with a purchase before --as-of, including those the stage rules call dormant or
    churned (churn there is an estimate: lapsed customers are win-back targets). On a
    contractual workspace, a cancelled customer keeps null churn, upsell and CLV scores
    (the contract has ended) and the predicted stage 'churned'.

    With an uplift champion, each scored customer also gets a decision, allocated under
    --budget and the daily capacities across the whole base; decisions are logged in
    WORKSPACE/decisions/. Read the output with pandas.read_parquet(OUT).

    --engine spark scores and decides on Spark with the same functions: the models run on
    the executors, the budget's allocation across the whole base on the driver, so every
    decision is the one the local engine makes (see pipelines/score_spark.py).

    Examples:

      clm score --as-of 2025-12-01 --out scores.parquet

      clm score --as-of 2025-12-01 --out plan.parquet --budget 5000 --catalogue my_actions.yaml

      clm score --out scores.parquet --engine spark --spark-master local[8]
    """
    check_tracking(tracking_uri)
    from decisions.catalogue import load_catalogue
    from features.build import as_of_or_end
    from pipelines.cli import render
    from pipelines.jobs.engine import engine_session
    from pipelines.jobs.score import ScoreSettings, score_base
    from pipelines.outputs import is_batch_output

    check_output_dataset(out, "--out", is_batch_output, "`clm score` output")  # before any work
    spark_settings = engine_settings(engine, spark_master, spark_conf)
    actions = load_catalogue(catalogue)
    check_budget(budget)
    SHARE.check(exploration, "--exploration")
    CHUNK_ROWS.check(chunk_rows, "--chunk-rows")
    if partitions is not None:
        if engine != "spark":
            raise ClmError(f"--partitions {partitions} applies to --engine spark; add `--engine spark`.")
        PARTITIONS.check(partitions, "--partitions")
    ws = Workspace.at(workspace)
    manifest = ws.read_manifest()
    when = as_of_or_end(as_of, manifest)
    settings = ScoreSettings(when, out, actions, budget, exploration, chunk_rows, partitions, tracking_uri=tracking_uri)
    reporter = RichReporter()
    with ws.exclusive("clm score"), engine_session(ws, spark_settings, reporter) as spark:
        render.show(score_base(ws, settings, spark, reporter))


@user_errors
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 for every interface).")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Worker processes; each holds its own models.")] = 1,
    reload_seconds: Annotated[float, typer.Option(
        help="How often to look for a newly promoted champion (served without a restart).")] = 5.0,
    max_body_bytes: Annotated[int, typer.Option(
        help="The largest request body taken, in bytes; a larger one is answered 413.")] = 1 << 20,
    drain_seconds: Annotated[float, typer.Option(
        help="On SIGTERM, how long /readyz says 503 while requests are still answered, before the server stops "
             "(for a load balancer to take it out of rotation).")] = 10.0,
    catalogue: CatalogueOpt = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start the real-time API (BentoML) on the workspace's champions and online store.

    Endpoints: POST /score, /score_batch, /score_features, /feedback; GET /healthz,
    /readyz, /metrics; the docs page at http://HOST:PORT/ (spec: /openapi.json). Errors are
    JSON {"error", "field"}. API keys (optional): set
    CLM_API_KEYS=key1,key2 or CLM_API_KEYS_FILE=keys.txt, and send X-API-Key.

    Examples:

      clm serve --port 3000 -w demo

      curl -s -X POST http://127.0.0.1:3000/score -H 'content-type: application/json' -d '{"customer_id": "C0000001"}'

      CLM_API_KEYS=s3cret clm serve --workers 2
    """
    check_tracking(tracking_uri)
    from decisions.catalogue import load_catalogue
    from pipelines.jobs.serve import (
        ServeSettings,
        check_port_free,
        curl_example,
        prepare_server,
        start,
    )

    if not 0 < port < 65536:
        raise ClmError(f"--port {port} is not a port number (1-65535).")
    WORKERS.check(workers, "--workers")
    RELOAD_SECONDS.check(reload_seconds, "--reload-seconds")
    BODY_BYTES.check(max_body_bytes, "--max-body-bytes")
    DRAIN_SECONDS.check(drain_seconds, "--drain-seconds")
    check_port_free(host, port)  # as before the workspace is opened (the server checks them again)
    load_catalogue(catalogue)
    ws = Workspace.at(workspace)
    server = prepare_server(ws, ServeSettings(host, port, workers, reload_seconds, catalogue, tracking_uri,
                                                   max_body_bytes, drain_seconds))
    shown_host = host if host != "0.0.0.0" else "127.0.0.1"
    say(f"Serving {ws.root} on http://{host}:{port} (OpenAPI page there). Try:\n  "
        f"{curl_example(shown_host, port, server.example_customer)}", wrap=False)
    start(server)
