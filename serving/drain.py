"""A graceful stop on SIGTERM, for a load balancer that trusts /readyz: the server says it
is not ready at once, keeps answering for `seconds` (every answer closes its connection, so
that no client keeps one the server is about to close), then stops the way its web server
(uvicorn) stops: it takes no new connection and finishes the requests in flight. A second
SIGTERM stops it at once.

The handler is installed from the service's constructor, which BentoML runs in the worker's
main thread after uvicorn has put its own handler in place: that one is called after the
drain."""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class Drain:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.draining = threading.Event()

    def install(self) -> None:
        """Take SIGTERM over (only the main thread can; elsewhere, e.g. in a test, nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return
        server_stop = signal.getsignal(signal.SIGTERM)

        def stop_now(signum: int, frame: FrameType | None) -> None:
            if callable(server_stop):
                server_stop(signum, frame)
            else:  # no handler of the server's: the default action
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.raise_signal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.draining.is_set() or self.seconds <= 0:
                stop_now(signum, frame)
                return
            self.draining.set()
            timer = threading.Timer(self.seconds, stop_now, args=(signum, None))
            timer.daemon = True
            timer.start()

        signal.signal(signal.SIGTERM, on_sigterm)


class CloseWhileDraining:
    """ASGI middleware: while draining, every answer says `connection: close`."""

    def __init__(self, app: Any, drain: Drain):
        self.app, self.drain = app, drain

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.drain.draining.is_set():
            await self.app(scope, receive, send)
            return

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
