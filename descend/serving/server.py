"""Listening: a socket bound before the server starts, so that a port in use is a one-line
error and ``--port 0`` can say which port it got, and uvicorn serving the app on it.

uvicorn's HTTP/1.1 protocol (h11) is extended by `GuardedH11Protocol` with what an ASGI app
cannot do for itself, because it runs only once a request's headers have all arrived: a time
limit on those headers (uvicorn has none: a client sending half a request line held its
connection for ever), a cap on open connections that closes the oldest idle one for a new one,
and JSON for its own refusals.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable
from http import HTTPStatus

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from descend.errors import ConfigError
from descend.serving.guard import SECURITY_HEADERS, json_body
from descend.serving.limits import Limits
from descend.serving.metrics import Metrics

# Connections the system queues for the server to accept: room for a burst of clients.
BACKLOG = 512
# An answer that closes the connection before the body has all come (a 413) is followed by a
# lingering close, as nginx does: the server sends its end of the stream, then drops what still
# comes for up to this long (and at most one more upload's bytes) before closing. Closed at
# once, the system would reset the connection on the next piece of body, and a client still
# sending would lose the answer it had not yet read.
LINGER_SECONDS = 2.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port); `ConfigError` if it cannot
    be had."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0-65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--host {host!r} cannot be resolved ({e.strerror}); use an address "
                          "of this machine: 127.0.0.1, or 0.0.0.0 for every interface") from None
    sock = socket.socket(family, kind, proto)
    # As uvicorn does: a restarted server can listen again at once, while the last one's
    # connections linger in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(BACKLOG)  # connections made before uvicorn starts wait in the queue
    except OSError as e:
        sock.close()
        fix = ("choose another port with --port (0 picks a free one)"
               if e.errno == errno.EADDRINUSE else
               "use an address of this machine with --host (127.0.0.1, or 0.0.0.0 for all)"
               if e.errno == errno.EADDRNOTAVAIL else
               "ports under 1024 need root: use --port 8000" if e.errno == errno.EACCES else
               "check --host and --port")
        raise ConfigError(f"cannot listen on {host} port {port}: {e.strerror}; {fix}") from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: ASGIApp, limits: Limits | None = None,
                on_refused: Callable[[str], None] | None = None) -> uvicorn.Server:
    """A uvicorn server for ``app`` within ``limits`` (default: those of an app from
    `create_app`): only warnings and errors logged (the app writes its own access log);
    ``on_refused`` is told the reason of each connection refused or closed by the protocol
    (default: the app's ``/metrics``)."""
    limits = limits or getattr(app, "limits", None) or Limits()
    if on_refused is None and isinstance(getattr(app, "metrics", None), Metrics):
        refused = app.metrics.refused  # type: ignore[attr-defined]
        on_refused = lambda reason: refused.labels(reason).inc()
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,),
                    {"limits": limits, "on_refused": staticmethod(on_refused or (lambda r: None))})
    config = uvicorn.Config(app, http=protocol, log_level="warning", access_log=False,
                            server_header=False, date_header=False,
                            timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
                            timeout_graceful_shutdown=int(limits.shutdown_timeout))
    return uvicorn.Server(config)


def raw_answer(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole JSON answer that closes the connection, as bytes to write before any request
    has been read."""
    body = json_body(message)
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close",
             *(f"{k}: {v}" for k, v in {**SECURITY_HEADERS, **(headers or {})}.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class LingeringTransport:
    """A connection's transport whose ``close`` lingers when the request's body has not all
    come (`GuardedH11Protocol.linger`); everything else is the transport's own."""

    def __init__(self, raw: asyncio.Transport, protocol: GuardedH11Protocol) -> None:
        self.raw, self.protocol = raw, protocol

    def __getattr__(self, name: str) -> object:
        return getattr(self.raw, name)

    def close(self) -> None:
        p = self.protocol
        if not p.lingering and not self.raw.is_closing() and \
                p.conn.their_state is h11.SEND_BODY:
            p.linger(self.raw)
        elif not p.lingering:
            self.raw.close()

    def is_closing(self) -> bool:
        return self.protocol.lingering or self.raw.is_closing()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, a connection cap and JSON refusals."""

    limits = Limits()
    on_refused: Callable[[str], None] = staticmethod(lambda reason: None)
    header_timer: asyncio.TimerHandle | None = None
    idle_since = 0.0  # when the connection last had no request under way
    partial = False  # bytes of a request have come, not yet all its headers
    answered = 0  # requests answered on this connection

    @property
    def busy(self) -> bool:
        """A request is under way: its headers have come and its answer is not complete."""
        return self.cycle is not None and not self.cycle.response_complete

    lingering = False
    linger_left = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        self.transport = LingeringTransport(transport, self)  # type: ignore[assignment]
        if full and not self.make_room():
            self.on_refused("connections")
            transport.write(raw_answer(503, f"this server has {self.limits.max_connections} "
                                       "connections under way (--max-connections); retry in "
                                       "a second", {"retry-after": "1"}))
            transport.close()
            return
        self.wait_for_headers()

    def make_room(self) -> bool:
        """Close the connection idle the longest (none under way), one that has not had an
        answer yet (a half-sent request, or nothing) before a client's kept-alive one between
        requests; False if every one is busy."""
        idle = [c for c in self.connections
                if c is not self and isinstance(c, GuardedH11Protocol) and not c.busy
                and not c.transport.is_closing()]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: (c.answered > 0, c.idle_since))
        self.on_refused("evicted")
        oldest.close_quietly()
        return True

    def close_quietly(self) -> None:
        if not self.transport.is_closing():
            self.cancel_header_timer()
            self.transport.close()

    def wait_for_headers(self) -> None:
        self.cancel_header_timer()
        self.idle_since, self.partial = time.monotonic(), False
        self.header_timer = self.loop.call_later(self.limits.header_timeout, self.headers_late)

    def cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def headers_late(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or self.busy:
            return
        self.on_refused("header-timeout")
        if self.partial:
            self.transport.write(raw_answer(408, "the request's headers took longer than this "
                                            f"server's {self.limits.header_timeout:g} s "
                                            "(--header-timeout)"))
        self.transport.close()

    def linger(self, raw: asyncio.Transport) -> None:
        """Close after an answer that came before the body's end (see `LINGER_SECONDS`)."""
        self.cancel_header_timer()
        self.lingering, self.linger_left = True, self.limits.max_body_bytes
        if raw.can_write_eof():
            raw.write_eof()
        self.loop.call_later(LINGER_SECONDS, raw.close)

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # dropped unread, and the end comes sooner for a flood
            self.linger_left -= len(data)
            if self.linger_left < 0:
                self.transport.raw.close()  # type: ignore[attr-defined]
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # waiting for (the rest of) a request's headers
            if self.header_timer is None and not self.transport.is_closing():
                self.wait_for_headers()  # a body read on after its answer came to its end
            self.partial = True
        else:  # the headers are in: the request's own limits apply from here
            self.cancel_header_timer()

    def on_response_complete(self) -> None:
        self.answered += 1
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """h11 could not parse the request (or its headers passed 16 KB): JSON, then close."""
        self.on_refused("bad-http")
        self.cancel_header_timer()
        body = json_body("not an HTTP/1.1 request this server can read (a malformed request "
                         "line or header, or headers over 16 KB)")
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
        try:
            for event in (h11.Response(status_code=400, headers=headers),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # h11 cannot answer in this state: close without
            pass
        self.transport.close()
