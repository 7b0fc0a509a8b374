"""Pipelines: the `clm` command line and the jobs it runs end to end.

It owns orchestration (simulate or ingest, validate, and later features, training,
scoring and materialisation as one job), the CLI's options, progress display and error
reporting, and ingestion of real exports. It must not hold domain rules, feature or
model logic: it calls `clm`, `simulator`, `features`, `training` and `serving` for those.
"""
