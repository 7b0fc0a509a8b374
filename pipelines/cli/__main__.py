"""`python -m pipelines.cli`: the same as `clm`."""
from pipelines.cli import app

app()
