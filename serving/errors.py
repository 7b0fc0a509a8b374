"""What the API answers with besides a result: errors carrying their HTTP status. Kept apart
from the modules that raise them (which load Feast, MLflow and the models) so that the
service's definition, which BentoML's arbiter imports, loads none of those."""
from __future__ import annotations

from clm.errors import ClmError


class RequestError(ClmError):
    """Something the caller sent that clm cannot answer: an HTTP status, and the field."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.field = status, field


class StoreUnavailable(ClmError):
    """The online store cannot be read now (HTTP 503)."""
