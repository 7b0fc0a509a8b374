"""What every HTTP request to the real-time API passes through before and after clm's
routes (an ASGI middleware around BentoML's app, `Guard`):

- a body over the size limit is refused with 413 before it is read further (the limit:
  `CLM_MAX_BODY_BYTES`, default 1 MiB; a batch of 1,000 ids takes about 20 kB);
- a POST to one of clm's routes not sent as JSON (another content type, or none) is refused
  with 415, and a body that has not all arrived within 30 s with 408;
- every error answer has one shape, `ErrorBody` (`{"error": ..., "field": ...}`), whoever
  made it (clm, FastAPI, BentoML's router and readiness, a 500), and is logged on one
  line: status, method, path, field and message (no traceback for a client's mistake, no
  request body).
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 1 << 20
BODY_SECONDS = 30.0  # a body not all there by then is refused (408): a stalled client holds no worker
LOG = logging.getLogger("clm.api")


def printable(text: str) -> str:
    """Text for a log line: control characters (a newline a client put in a path or an id)
    escaped, so that one error stays one line and no client can write a line of its own."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def status_phrase(status: int) -> str:
    """A status's name ("Not Found"), or its number where HTTP names none."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)


def error_body(error: str, field: str | None = None) -> bytes:
    return json.dumps({"error": error, "field": field}).encode()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _as_error(status: int, payload: bytes, content_type: str, method: str, path: str) -> tuple[str, str | None]:
    """The (error, field) of an error answer, whatever shape it came in."""
    if content_type.startswith("application/json"):
        try:
            found = json.loads(payload)
        except ValueError:
            found = None
        if isinstance(found, dict) and isinstance(found.get("error"), str):
            field = found.get("field")
            return found["error"], field if isinstance(field, str) else None
        if isinstance(found, dict) and isinstance(found.get("detail"), str):
            return found["detail"], None
    if status == 404:
        return f"no route {method} {path}: the API's routes are listed at /openapi.json", None
    if status == 405:
        return f"{method} is not allowed on {path}: see /openapi.json for the methods it takes", None
    if status >= 500 and status != 503:
        return "internal error: the server log has the details", None
    text = payload.decode("utf-8", "replace").strip()
    return text or HTTPStatus(status).phrase, None


class Guard:
    """The body limit, JSON only on clm's routes, and one error shape (see the module)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 json_routes: Iterable[str] = (), body_seconds: float = BODY_SECONDS):
        self.app, self.limit, self.json_routes = app, max_body_bytes, frozenset(json_routes)
        self.body_seconds = body_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", "GET"), scope.get("path", "")
        headers = _headers(scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, method, path, 413, f"the body holds {int(declared):,} bytes: at most "
                               f"{self.limit:,} are taken (CLM_MAX_BODY_BYTES)")
            return
        if path != path.rstrip("/") and path.rstrip("/") in self.json_routes:  # not a redirect to the route
            await self._refuse(send, method, path, 404, f"no route {method} {path}: the route is "
                               f"{path.rstrip('/')} (see /openapi.json)")
            return
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if method == "POST" and path in self.json_routes and content_type != "application/json":
            await self._refuse(send, method, path, 415, "the body must be sent as JSON (content-type: "
                               f"application/json), not {content_type[:100] or 'without a content type'!r}")
            return
        body = bytearray()
        try:
            # In this task (asyncio.wait_for's task per receive kept uvicorn from stopping for a minute).
            async with asyncio.timeout(self.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > self.limit or not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(send, method, path, 408, f"the body did not arrive within {self.body_seconds:g} s")
            return
        if len(body) > self.limit:
            await self._refuse(send, method, path, 413, f"the body holds more than {self.limit:,} bytes "
                               "(CLM_MAX_BODY_BYTES)")
            return
        await self.app(scope, _replay(bytes(body), receive), _ErrorShaper(send, method, path))

    async def _refuse(self, send: Send, method: str, path: str, status: int, error: str) -> None:
        LOG.warning("%d %s %s: %s", status, method, printable(path), printable(error))
        payload = error_body(error)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    """The request's body, read once already, handed on; then the connection's own messages."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _ErrorShaper:
    """A `send` that holds an error answer until its body is complete, then sends it as
    ErrorBody and logs it on one line."""

    def __init__(self, send: Send, method: str, path: str):
        self.send, self.method, self.path = send, method, path
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = int(self.start["status"])
        kept = [(k, v) for k, v in self.start.get("headers", [])
                if k.lower() not in (b"content-type", b"content-length")]
        content_type = next((v.decode("latin-1") for k, v in self.start.get("headers", [])
                             if k.lower() == b"content-type"), "")
        error, field = _as_error(status, b"".join(self.chunks), content_type, self.method, self.path)
        log = LOG.error if status >= 500 and status != 503 else LOG.warning  # 503: not ready, expected in a drain
        # A client's error is logged by its status's name: its text may quote what the request held
        # (a customer id, a feature's value), which stays out of the server's logs.
        said = error if status >= 500 else status_phrase(status)
        log("%d %s %s: %s%s", status, self.method, printable(self.path), printable(said),
            f" (field {printable(field)})" if field else "")
        payload = error_body(error, field)
        await self.send({**self.start, "headers": [*kept, (b"content-type", b"application/json"),
                                                  (b"content-length", str(len(payload)).encode())]})
        await self.send({"type": "http.response.body", "body": payload})
