"""How ``leve serve`` holds its connections: idle ones are closed, only requests count, every answer
carries the security headers.

uvicorn (0.55 here, h11 protocol) counts a connection toward ``limit_concurrency`` from its first
byte on, before any request, and never times out one that sends nothing; 64 idle sockets lock every
client out with 503 (its check is ``>=``, so ``limit_concurrency=64`` already refuses the 64th). Its
own 503 and h11's 400 are written by uvicorn itself, past the app's middleware, so they carry no
security headers. Hence :class:`GuardedH11Protocol`:

- a connection with no request in progress (none yet, or between keep-alive requests, a request head
  still trickling in included) is closed ``idle_timeout_s`` seconds after it opened or after its last
  answer, whatever it sent meanwhile;
- uvicorn's own limit is off; :class:`RequestLimit` (in the app) answers 503 when ``max_connections``
  requests are already in progress, so connections that have not asked anything never count;
- h11's 400 (malformed request line or headers) gets :data:`SECURITY_HEADERS` too.

:func:`uvicorn_options` gives ``uvicorn.run`` / ``uvicorn.Config`` these settings.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from leve.serve.config import Config

LOG = logging.getLogger("leve.serve")

# Sent with every response. The page loads its script and stylesheet from static/ only and
# shows its images as data: URLs; nothing may frame it, sniff types or leak the URL onwards.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
RAW_HEADERS = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with an idle timeout and security headers on its own 400."""

    idle_timeout_s = 5.0  # set per server by :func:`protocol_class`

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._idle: asyncio.TimerHandle | None = None
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_idle()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_idle()  # the next request's head must arrive in time too

    def _arm_idle(self) -> None:
        self._cancel_idle()
        self._idle = self.loop.call_later(self.idle_timeout_s, self._idle_expired)

    def _cancel_idle(self) -> None:
        if getattr(self, "_idle", None) is not None:
            self._idle.cancel()  # type: ignore[union-attr]
            self._idle = None

    def _idle_expired(self) -> None:
        """Close the connection unless a request is in progress (the app's upload timeout covers those)."""
        self._idle = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, with the security headers."""
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"), *RAW_HEADERS]
        for event in (h11.Response(status_code=400, headers=headers, reason=STATUS_PHRASES[400]),
                      h11.Data(data=msg.encode("ascii")), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def protocol_class(idle_timeout_s: float) -> type[GuardedH11Protocol]:
    """:class:`GuardedH11Protocol` closing idle connections after ``idle_timeout_s`` seconds."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"idle_timeout_s": float(idle_timeout_s)})


def uvicorn_options(cfg: Config) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` (besides the app, host and port)."""
    return {"http": protocol_class(cfg.idle_timeout_s), "timeout_keep_alive": cfg.idle_timeout_s,
            "limit_concurrency": None, "server_header": False, "log_level": "warning"}


class RequestLimit:
    """ASGI middleware: at most ``limit`` requests in progress (body upload, waiting for a turn,
    predicting, a download being sent); one more is answered 503 at once, with ``Retry-After``."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit
        self.active = 0  # touched only on the event loop's thread

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            LOG.warning("leve serve: 503: %d requests already in progress (serve.max_connections)", self.active)
            body = b'{"error":"server busy: too many requests in progress; try again in a moment"}'
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close"), (b"retry-after", b"1")]})
            await send({"type": "http.response.body", "body": body})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class SecurityHeaders:
    """ASGI middleware: adds :data:`SECURITY_HEADERS` to every response, and ``no-store`` to API ones."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(RAW_HEADERS)
        if "/api/" in scope.get("path", ""):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []), *(h for h in extra if h[0] not in names)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
