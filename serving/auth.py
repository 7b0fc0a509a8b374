"""Optional API-key auth for the real-time API.

Keys come from the environment variable CLM_API_KEYS (comma-separated) and/or a file named
by CLM_API_KEYS_FILE (one key per line, `#` comments); only their SHA-256 hashes are kept
in memory. With no key configured the API is open. With keys, a request to a protected
path must carry one in the `X-API-Key` header (or `Authorization: Bearer KEY`), else 401;
health, readiness, metrics and the OpenAPI page stay open.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from clm.errors import ClmError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_hashes(environ: MutableMapping[str, str] | None = None) -> frozenset[bytes]:
    """Hashes of the configured keys (empty: auth off)."""
    env = os.environ if environ is None else environ
    keys = [k.strip() for k in env.get("CLM_API_KEYS", "").split(",")]
    path = env.get("CLM_API_KEYS_FILE")
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as err:
            raise ClmError(f"CLM_API_KEYS_FILE {path} cannot be read: {err.strerror}.") from None
        keys += [line.strip() for line in lines if not line.strip().startswith("#")]
    return frozenset(digest(k) for k in keys if k)


class ApiKeyMiddleware:
    """ASGI middleware: 401 for a protected path without a valid key."""

    def __init__(self, app: Callable[..., Awaitable[None]], hashes: frozenset[bytes], protected: Iterable[str]):
        self.app, self.hashes, self.protected = app, hashes, frozenset(protected)

    def _authorised(self, scope: Scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        key = headers.get("x-api-key")
        if key is None and headers.get("authorization", "").lower().startswith("bearer "):
            key = headers["authorization"][7:]
        if key is None:
            return False
        given = digest(key.strip())
        return any(hmac.compare_digest(given, h) for h in self.hashes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not self.hashes or scope.get("path", "").rstrip("/") not in self.protected
                or self._authorised(scope)):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "missing or invalid API key: send it in the X-API-Key header",
                           "field": None}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'ApiKey header="X-API-Key"')]})
        await send({"type": "http.response.body", "body": body})
