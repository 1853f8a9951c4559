"""The edge of the app: what every request meets before and after the endpoints, in
``descend serve`` and on the review page of ``descend audit --review``.

`Guard` is an ASGI middleware around the whole app. It refuses a request whose ``Host`` is not
one of the server's names (DNS rebinding: a hostile page whose name resolves to 127.0.0.1 would
otherwise be same-origin with this server) and a cross-site POST (any page on the web can post a
form to 127.0.0.1), unless the origin is allowed. It bounds the time a body may pause and the
time of a whole request, answers anything unexpected with a JSON 500 that names nothing of the
machine (the traceback goes to the log), puts ``nosniff`` and ``frame-ancestors 'none'`` on
every answer, counts each answer for ``/metrics`` and writes one JSON line per request to the
access log. `error` is the one shape of an error answer, ``{"error": message}``, and
`exception_handlers` turn what an endpoint raises into one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TextIO
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from descend.serving.limits import Limits
from descend.serving.metrics import Metrics

log = logging.getLogger("descend.serving")

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")
# Headers on every answer: no content-type sniffing, and no page of this server in a frame.
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOGGED_PATH = 200  # characters of a path in the access log
CLOSE = {"connection": "close"}  # and read no more of the body: uvicorn closes the connection


class BodyTimeout(Exception):
    """The request body paused for longer than the limit."""


def error(status: int, message: str,
          headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error answer from an endpoint: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def json_body(message: str) -> bytes:
    """The body of an error answer sent below the app (`answer`, the server's own)."""
    return json.dumps({"error": message}).encode()


def exception_handlers(limits: Limits) -> dict[Any, Callable[[Request, Exception],
                                                            Awaitable[Response]]]:
    """Starlette's handlers for what the guard lets an app raise: a stalled upload (408) and
    anything unexpected (a JSON 500 naming nothing of the machine; `Guard` logs it)."""

    async def body_late(request: Request, exc: Exception) -> Response:
        return error(408, f"the upload paused for longer than this server's "
                     f"{limits.body_timeout:g} s (--body-timeout)", CLOSE)

    async def internal_error(request: Request, exc: Exception) -> Response:
        return error(500, "the server failed on this request; its log has the details", CLOSE)

    return {BodyTimeout: body_late, Exception: internal_error}


def default_hosts(listen: str) -> list[str]:
    """The ``Host`` names a server listening on ``listen`` answers to: that address; with the
    localhost names for a loopback address; with this machine's names and addresses for every
    interface (0.0.0.0, ::)."""
    names = [listen]
    if listen in ANY_ADDRESS:
        names = [*LOCAL_NAMES, socket.gethostname(), socket.getfqdn()]
        with contextlib.suppress(OSError):
            names += [str(a[4][0]) for a in socket.getaddrinfo(socket.gethostname(), None)]
    elif listen == "localhost" or _is_loopback(listen):
        names += LOCAL_NAMES
    return sorted({n.lower().rstrip(".") for n in names if n})


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name in a ``Host`` value: ``example.org:8000`` and ``[::1]:8000`` give
    ``example.org`` and ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else ""
    return value.rsplit(":", 1)[0].rstrip(".") if value.count(":") == 1 else value.rstrip(".")


@dataclass
class HostPolicy:
    """Which ``Host`` names a request may carry, and which other origins may POST; and what a
    refused request is told (by default what ``descend serve``'s flags can change)."""

    hosts: Iterable[str] = LOCAL_NAMES
    origins: Iterable[str] = ()
    # The name sent is not repeated: an answer must not echo what a hostile page chose.
    wrong_host: str = ("this server does not answer to the host name in the request; ask for "
                       "it by a name it listens on, or start it with --allow-host NAME")
    cross_site: str = ("a cross-site request: this server takes POSTs from its own page and "
                       "from programs; start it with --allow-origin ORIGIN to let another "
                       "site's pages post")
    cross_site_fetch: str = ("a cross-site request (Sec-Fetch-Site); this server takes POSTs "
                             "from its own page and from programs")

    def __post_init__(self) -> None:
        self.hosts = frozenset(host_name(h) for h in self.hosts)
        self.origins = frozenset(o.lower().rstrip("/") for o in self.origins)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request must be refused, else None."""
        headers = Headers(scope=scope)
        host = host_name(headers.get("host", ""))
        if "*" not in self.hosts and host not in self.hosts:
            return 400, self.wrong_host
        if scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            if origin.lower().rstrip("/") in self.origins or "*" in self.origins:
                return None
            if urlsplit(origin.lower()).netloc == headers.get("host", "").lower():
                return None  # the server's own page
            return 403, self.cross_site
        if headers.get("sec-fetch-site", "none") not in ("same-origin", "none"):
            return 403, self.cross_site_fetch
        return None

    def cors_origin(self, scope: Scope) -> str | None:
        """The ``Origin`` to name in ``Access-Control-Allow-Origin``: an allowed other one."""
        origin = Headers(scope=scope).get("origin")
        if origin is None or not self.origins:
            return None
        return origin if origin.lower().rstrip("/") in self.origins or "*" in self.origins \
            else None


@dataclass
class Exchange:
    """One request as the guard sees it."""

    start: float = field(default_factory=time.monotonic)
    status: int = 0
    started: bool = False
    body_done: bool = False
    bytes_in: int = 0
    bytes_out: int = 0
    error: str = ""


class Guard:
    """The middleware around the app (see the module's docstring). ``metrics``: where answers
    are counted (None: nowhere); ``headers``: those every answer carries unless it has its own."""

    def __init__(self, app: ASGIApp, policy: HostPolicy, limits: Limits | None = None,
                 metrics: Metrics | None = None, access_log: TextIO | None = None,
                 headers: Mapping[str, str] = SECURITY_HEADERS) -> None:
        self.app, self.policy, self.limits = app, policy, limits or Limits()
        self.metrics, self.access_log, self.headers = metrics, access_log, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan
            await self.app(scope, receive, send)
            return
        exchange = Exchange()
        cors = self.policy.cors_origin(scope)

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status, exchange.started = message["status"], True
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
                if cors is not None:
                    headers["access-control-allow-origin"] = cors
                    headers.append("vary", "Origin")
                message = {**message, "headers": headers.raw}
            elif message["type"] == "http.response.body":
                exchange.bytes_out += len(message.get("body", b""))
            await send(message)

        async def guarded_receive() -> Message:
            if exchange.body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.limits.body_timeout)
            except asyncio.TimeoutError:
                raise BodyTimeout from None
            if message["type"] == "http.request":
                exchange.bytes_in += len(message.get("body", b""))
                exchange.body_done = not message.get("more_body", False)
            else:
                exchange.body_done = True
            return message

        try:
            refusal = self.policy.refusal(scope)
            if refusal is not None:
                exchange.error = "refused"
                # The body is dropped within the upload limit, so that a client that sends all
                # of it before reading reads the answer, not a reset; a longer one is cut off.
                try:
                    complete = await drain(guarded_receive, self.limits.max_body_bytes)
                except BodyTimeout:
                    complete = False
                await answer(guarded_send, *refusal, close=not complete)
            else:
                await self.run(scope, guarded_receive, guarded_send, exchange)
        finally:
            seconds = time.monotonic() - exchange.start
            if self.metrics is not None:
                self.metrics.answered(scope["path"], exchange.status, seconds)
            if self.access_log is not None:
                self.write_log(scope, exchange, seconds)

    async def run(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        """The app, within the request's time, with anything it raises made a JSON 500."""
        task = asyncio.ensure_future(self.app(scope, receive, send))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.limits.request_timeout)
        except asyncio.CancelledError:  # the server is closing the connection
            task.cancel()
            raise
        if not done:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            exchange.error = "request-timeout"
            if not exchange.started:
                if exchange.body_done:
                    await answer(send, 503, "the request took longer than this server's "
                                 f"{self.limits.request_timeout:g} s (--request-timeout); "
                                 "retry later", {"retry-after": "5"}, close=True)
                else:
                    await answer(send, 408, "the upload took longer than this server's "
                                 f"{self.limits.request_timeout:g} s (--request-timeout)",
                                 close=True)
            return
        error = task.exception()
        if error is None:
            return
        if isinstance(error, BodyTimeout):
            exchange.error = "body-timeout"
            if not exchange.started:
                await answer(send, 408, "the upload paused for longer than this server's "
                             f"{self.limits.body_timeout:g} s (--body-timeout)", close=True)
            return
        exchange.error = type(error).__name__
        log.error("error in %s %s", scope["method"], scope["path"][:LOGGED_PATH],
                  exc_info=error)
        if not exchange.started:
            await answer(send, 500, "the server failed on this request; its log has the "
                         "details", close=True)

    def write_log(self, scope: Scope, exchange: Exchange, seconds: float) -> None:
        assert self.access_log is not None
        client = scope.get("client")
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "client": client[0] if client else None,
            "method": scope["method"], "path": scope["path"][:LOGGED_PATH],
            "status": exchange.status, "ms": round(seconds * 1000, 1),
            "bytes_in": exchange.bytes_in, "bytes_out": exchange.bytes_out,
        }
        if exchange.error:
            line["error"] = exchange.error
        with contextlib.suppress(OSError, ValueError):  # a closed or broken log stream
            self.access_log.write(json.dumps(line) + "\n")
            self.access_log.flush()


async def drain(receive: Receive, limit: int) -> bool:
    """Read and drop a request's body: True if it ended within ``limit`` bytes (False, and
    the rest unread, past them or if the client left)."""
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        if seen > limit:
            return False
        if not message.get("more_body", False):
            return True


async def answer(send: Send, status: int, message: str,
                 headers: dict[str, str] | None = None, close: bool = False) -> None:
    """A JSON error answer, sent straight through ``send``."""
    body = json_body(message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:  # and stop reading: uvicorn closes a connection whose answer says so
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
