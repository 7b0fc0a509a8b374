"""clm's jobs: plain functions that take a workspace and typed settings, do the work, and
return a result dataclass. The CLI (`pipelines.cli`) parses options into settings, calls
a job and renders its result; a notebook or an Airflow task calls the same function
directly, without the CLI.

    simulate.simulate            a simulated business into WORKSPACE/raw
    validate.validate            the raw tables against their data contracts
    features.build / register / load_online_store
                                 feature snapshots, Feast's registry, the online store
    train.train_models           train, gate and register every model asked for
    models.*                     the registry by hand: list, promote, rollback, history
    score.score_base             the nightly batch: scores and decisions for the whole base
    retrain.retrain              the scheduled retraining (features, train, online store, batch)
    evaluate_policy.evaluate_policy
                                 clm's decisions against the oracle and the simple policies
    pipelines.backtest.backtest  how good the scores were at a past date (its own module,
                                 with BacktestConfig in and a BacktestReport out)
    monitor.monitor_workspace    drift, matured scores and the policy over time
    report.write_report          the lifecycle report (one HTML file)
    serve.prepare_server         what `clm serve` starts (checked before it starts)
    run.run_main_job             the main job end to end on a simulated business

Every job takes a `Reporter` (`pipelines.jobs.reporting`) for progress; the default logs
the steps and warnings to the `clm` logger. The CLI holds the workspace's lock around a job
(`with workspace.exclusive("clm score"): ...`); code that calls a job beside scheduled runs
should too.
"""
