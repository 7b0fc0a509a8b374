"""Shared domain core of clm: the one place for the names every package agrees on.

It owns lifecycle stage ids, the proactive-action catalogue, raw table names, workspace
paths, the raw-data contracts (pandera) and the user-facing error type. `features`,
`training`, `serving`, `pipelines` and `simulator` import from here; this package imports
none of them, and holds no model, feature or pipeline logic of its own.
"""
