"""Listening: a socket bound before the server starts, so that a port in use is a one-line
error and ``--port 0`` can say which port it got, and uvicorn serving the app on it."""

from __future__ import annotations

import errno
import socket

import uvicorn
from starlette.types import ASGIApp

from descend.errors import ConfigError


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
        sock.listen(128)  # connections made before uvicorn starts wait in the queue
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


def make_server(app: ASGIApp) -> uvicorn.Server:
    """A uvicorn server for ``app``: only warnings and errors logged, no line per request."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
    return uvicorn.Server(config)
