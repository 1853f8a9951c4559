"""The server on a real socket: header timeout, connection cap, a 413 that stops reading, JSON
for what h11 cannot parse, and a SIGTERM that lets the requests under way finish."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from descend.evaluation.predict import Classifier
from descend.serving import Limits, create_app

Serve = Callable[[object], AbstractContextManager[str]]
FIXTURE = Path(__file__).parent.parent / "fixtures" / "run-0.1.0" / "best.pt"


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def read_all(sock: socket.socket, seconds: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(seconds)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def multipart(image: bytes) -> tuple[bytes, bytes]:
    """(head of a request with a Content-Length, its multipart body)."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"red.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + image + b"\r\n--b--\r\n")
    head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head, body


def test_half_sent_headers_get_a_408_and_the_connection_closed(
        fixture_classifier: Classifier, serve: Serve) -> None:
    app = create_app(fixture_classifier, limits=Limits(header_timeout=0.5))
    with serve(app) as url:
        sock = connect(url)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
        start = time.monotonic()
        answer = read_all(sock)
        assert time.monotonic() - start < 5
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"--header-timeout" in answer and b"x-content-type-options: nosniff" in answer
        silent = connect(url)  # nothing sent at all: closed without a word
        assert read_all(silent) == b""
        assert httpx.get(f"{url}/metrics").text.count('reason="header-timeout"} 2.0') == 1


def test_past_the_connection_cap_the_oldest_idle_one_makes_room(
        fixture_classifier: Classifier, serve: Serve, png_bytes: bytes) -> None:
    app = create_app(fixture_classifier, limits=Limits(max_connections=4, header_timeout=60))
    with serve(app) as url:
        idle = [connect(url) for _ in range(4)]
        for sock in idle:
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # half-sent headers: not under way
        time.sleep(0.3)
        r = httpx.post(f"{url}/predict", files={"file": ("red.png", png_bytes)}, timeout=10)
        assert r.status_code == 200
        assert read_all(idle[0], 5) == b""  # the oldest was closed for it
        assert "descend_refused_total{reason=\"evicted\"}" in httpx.get(f"{url}/metrics").text
        for sock in idle:
            sock.close()


def test_with_every_connection_busy_a_new_one_gets_a_json_503(
        fixture_classifier: Classifier, serve: Serve) -> None:
    app = create_app(fixture_classifier, limits=Limits(max_connections=2, body_timeout=30))
    with serve(app) as url:
        busy = [connect(url) for _ in range(2)]
        for sock in busy:  # headers in, body awaited: both under way
            head, body = multipart(b"x" * 1000)
            sock.sendall(head + body[:100])
        time.sleep(0.3)
        extra = connect(url)
        answer = read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer
        assert "--max-connections" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        for sock in busy:
            sock.close()


# The headers of a 300 MB upload, its body yet to come.
HUGE_UPLOAD = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: multipart/form-data; boundary=b\r\n"
               b"Content-Length: 300000000\r\n\r\n")


def test_a_413_closes_the_connection_and_reads_no_more_of_the_body(
        fixture_classifier: Classifier, serve: Serve) -> None:
    app = create_app(fixture_classifier, limits=Limits(max_upload_bytes=100_000))
    with serve(app) as url:
        sock = connect(url)
        sock.sendall(HUGE_UPLOAD)
        sent, chunk = 0, b"\0" * 65536
        with pytest.raises(OSError):  # reset or broken pipe, long before 300 MB
            while sent < 300_000_000:
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 50_000_000


def test_413_says_connection_close(fixture_classifier: Classifier, serve: Serve) -> None:
    app = create_app(fixture_classifier, limits=Limits(max_upload_bytes=100_000))
    with serve(app) as url:
        sock = connect(url)
        sock.sendall(HUGE_UPLOAD)
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer.lower()


def test_what_h11_cannot_parse_is_a_json_400(fixture_classifier: Classifier,
                                             serve: Serve) -> None:
    with serve(create_app(fixture_classifier)) as url:
        for request in (b"NOT HTTP AT ALL\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 20_000):  # > 16 KB
            sock = connect(url)
            sock.sendall(request)
            answer = read_all(sock)
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
            assert "HTTP/1.1" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


def test_sigterm_finishes_the_request_under_way_then_stops(png_bytes: bytes) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "descend", "serve", str(FIXTURE), "--port",
                             "0", "--device", "cpu", "--no-access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("descend serve: http://"), (line, proc.stderr.read())
        url = line.split()[2].rstrip("/")
        assert "evil" not in httpx.get(f"{url}/health", headers={"host": "evil.example"}).text
        sock = connect(url)
        head, body = multipart(png_bytes)
        sock.sendall(head + body[:50])  # a request under way
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):  # no new connection is taken
            httpx.get(f"{url}/health", timeout=2)
        sock.sendall(body[50:])
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["path"] == "red.png"
        assert proc.wait(20) == 0
        assert proc.stdout.read().strip() == "descend serve: stopped"
    finally:
        proc.kill()
        proc.wait()


def test_every_limit_is_a_flag_in_help() -> None:
    out = subprocess.run([sys.executable, "-m", "descend", "serve", "--help"],
                         capture_output=True, text=True).stdout
    for flag in ("--max-pixels", "--max-in-flight", "--max-queue", "--max-batch-size",
                 "--max-batch-wait-ms", "--max-connections", "--header-timeout",
                 "--keep-alive-timeout", "--body-timeout", "--request-timeout",
                 "--allow-host", "--allow-origin", "--no-access-log", "--max-upload-mb"):
        assert flag in out, flag


def test_a_limit_out_of_range_is_one_line_and_status_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    from descend.cli.main import main

    for flag, value in (("--max-queue", "-1"), ("--max-batch-size", "0"),
                        ("--body-timeout", "0")):
        assert main(["serve", str(FIXTURE), "--port", "0", flag, value]) == 2
        err = capsys.readouterr().err
        assert err.startswith("descend: error: ") and flag in err and err.count("\n") == 1
