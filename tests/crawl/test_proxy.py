"""Proxies from the environment: used, and the address policy applied to both hops."""

from __future__ import annotations

import select
import shutil
import socket
import socketserver
import threading
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx
import pytest

from descend.crawl import ClassSpec, CrawlConfig, crawl
from descend.crawl.manifest import MANIFEST_NAME, UrlRecord, history_of, read_records
from descend.crawl.proxy import EnvironmentProxies
from descend.errors import ConfigError
from tests.support.fakeweb import FakeWeb, pictures

FAST = dict(timeout=2.0, retries=0, backoff=0.01, progress=False, per_class=10)


class ForwardProxy:
    """A tiny HTTP proxy on 127.0.0.1: absolute-form requests forwarded, CONNECT tunnelled.

    ``requests`` logs each request line as it arrives ("GET http://host:port/path",
    "CONNECT host:port"); every answer closes its connection, which keeps the relay simple.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[socketserver.StreamRequestHandler]:
        log = self.requests

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                method, target, _ = self.rfile.readline().decode("latin-1").split()
                headers = _head(self.rfile)
                log.append(f"{method} {target}")
                if method == "CONNECT":
                    host, port = target.rsplit(":", 1)
                    with socket.create_connection((host, int(port))) as upstream:
                        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        _pipe(self.connection, upstream)
                    return
                url = urlsplit(target)
                with socket.create_connection((url.hostname, url.port or 80)) as upstream:
                    path = url.path + (f"?{url.query}" if url.query else "")
                    upstream.sendall(f"{method} {path} HTTP/1.1\r\n".encode()
                                     + b"".join(headers) + b"Connection: close\r\n\r\n")
                    answer = upstream.makefile("rb")
                    self.wfile.write(b"".join(_head(answer)) + b"Connection: close\r\n\r\n")
                    shutil.copyfileobj(answer, self.wfile)

        return Handler


def _head(stream: BinaryIO) -> list[bytes]:
    """The header lines after a start line, without the hop-by-hop ones this proxy replaces."""
    lines = []
    while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
        if not line.lower().startswith((b"connection:", b"proxy-", b"keep-alive:")):
            lines.append(line)
    return lines


def _pipe(a: socket.socket, b: socket.socket) -> None:
    while True:
        readable, _, _ = select.select([a, b], [], [], 5)
        if not readable:
            return
        for side in readable:
            data = side.recv(65536)
            if not data:
                return
            (b if side is a else a).sendall(data)


def _last(out: Path) -> dict[str, UrlRecord]:
    return {url: r for (_, url), r in history_of(read_records(out / MANIFEST_NAME)).last.items()}


def _config(web: FakeWeb, out: Path, **extra: object) -> CrawlConfig:
    return CrawlConfig(classes=[ClassSpec("cat", ("猫",))], out=out, base_url=web.url,
                       **{**FAST, **extra})


def test_the_environment_is_read_as_urllib_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://ignored:1")
    monkeypatch.setenv("http_proxy", "http://user:secret@proxy.corp:8080")  # lower case wins
    monkeypatch.setenv("ALL_PROXY", "proxy.corp:3128")  # no scheme: http://, as in curl
    monkeypatch.setenv("NO_PROXY", ".intranet.example, 10.0.0.7,localhost:8000")
    proxies = EnvironmentProxies.from_environment()

    def via(url: str) -> str | None:
        proxy = proxies.for_url(httpx.URL(url))
        return None if proxy is None else f"{proxy.shown} {proxy.variable}"

    assert via("http://example.com/a.jpg") == "http://proxy.corp:8080 http_proxy"
    assert via("https://example.com/a.jpg") == "http://proxy.corp:3128 ALL_PROXY"
    assert via("https://www.intranet.example/a.jpg") is None  # a domain covers its hosts
    assert via("http://intranet.example/a.jpg") is None
    assert via("http://10.0.0.7:8080/a.jpg") is None  # a host without a port: any port
    assert via("http://localhost:8000/a.jpg") is None
    assert via("http://localhost:8001/a.jpg") is not None  # with a port: that port only
    line = proxies.describe()
    assert line == ("http:// via proxy http://proxy.corp:8080 (from http_proxy), https:// via "
                    "proxy http://proxy.corp:3128 (from ALL_PROXY); direct to "
                    "NO_PROXY=.intranet.example, 10.0.0.7,localhost:8000")
    assert "secret" not in line

    monkeypatch.setenv("NO_PROXY", "*")
    assert EnvironmentProxies.from_environment().describe() is None
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name)
    assert EnvironmentProxies.from_environment().describe() is None


def test_a_crawl_through_the_proxy_keeps_the_images_and_the_proxy_saw_them(
        web: FakeWeb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    urls = [web.add(f"/{i}.jpg", img) for i, img in enumerate(pictures(4))]
    web.baidu["猫"] = urls
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)  # on 127.0.0.1: trusted, as named
        report = crawl(_config(web, tmp_path / "out", per_class=4))

    assert report.classes[0].kept == 4
    assert all(r.status == "kept" for r in _last(tmp_path / "out").values())
    # Every request, search page and images, went through the proxy and reached the web.
    seen = [line.split()[1] for line in proxy.requests]
    assert all(line.startswith("GET ") for line in proxy.requests)
    assert set(urls) <= set(seen)
    assert any("/search/acjson?" in url for url in seen)
    assert len(web.requests) == len(proxy.requests)
    # Said once, after the table.
    assert report.format().splitlines()[2:-1] == [
        f"http:// via proxy {proxy.url} (from HTTP_PROXY), https:// direct"]


def test_private_targets_are_refused_before_the_proxy_unless_trusted(
        web: FakeWeb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imgs = pictures(3)
    with FakeWeb(host="127.0.0.2") as other, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        good = web.add("/good.jpg", imgs[0])
        web.add("/tls.jpg", imgs[2])
        private = other.add("/a.jpg", imgs[1])
        refused = {
            "another address": private,
            "https to another address": private.replace("http://", "https://"),
            # The proxy is trusted as the proxy, not as a target.
            "the proxy itself": proxy.url + "/good.jpg",
        }
        # The base URL's origin is trusted over https too: the proxy is asked for a tunnel
        # (TLS then fails against this plain-HTTP server, which is beside the point).
        trusted_tls = f"https://127.0.0.1:{web.port}/tls.jpg"
        web.baidu["猫"] = [good, trusted_tls, *refused.values()]
        out = tmp_path / "out"
        report = crawl(_config(web, out))

        last = _last(out)
        assert last[good].status == "kept"
        for what, url in refused.items():
            assert (last[url].status, last[url].reason) == (
                "rejected", "blocked-address:127.0.0.1" if what == "the proxy itself"
                else "blocked-address:127.0.0.2"), what
        assert report.classes[0].rejected["blocked-address"] == len(refused)
        assert "--allow-private-addresses" in report.format()
        # Refused here: neither the proxy nor the private server saw a request for them.
        assert not [line for line in proxy.requests if "127.0.0.2" in line]
        assert other.requests == []
        assert f"CONNECT 127.0.0.1:{web.port}" in proxy.requests
        assert last[trusted_tls].reason.startswith("connection-error")
        assert f"via proxy {proxy.url} (from HTTP_PROXY, HTTPS_PROXY)" in report.format()

        # Opting in, the same URLs go through the proxy and are fetched.
        web.baidu["猫"] = [good, private]
        report = crawl(_config(web, out, allow_private_addresses=True))
        assert _last(out)[private].status == "kept"
        assert f"GET {private}" in proxy.requests
        assert other.requests == ["/a.jpg"]


def test_no_proxy_hosts_go_direct(web: FakeWeb, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    web.baidu["猫"] = [web.add(f"/{i}.jpg", img) for i, img in enumerate(pictures(3))]
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("no_proxy", "example.com,127.0.0.1")
        report = crawl(_config(web, tmp_path / "out"))
    assert report.classes[0].kept == 3
    assert proxy.requests == []
    assert "direct to no_proxy=example.com,127.0.0.1" in report.format()


@pytest.mark.parametrize("value", ["socks5://user:pw@127.0.0.1:1080", "https://proxy.corp:443"])
def test_a_proxy_of_another_kind_is_refused_naming_what_is_supported(
        web: FakeWeb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ALL_PROXY", value)
    with pytest.raises(ConfigError, match=r"^ALL_PROXY=\w+://[^@]*? is a .* supports http:// "
                                          r"proxies only") as e:
        crawl(_config(web, tmp_path / "out"))
    assert "pw@" not in str(e.value)
    assert not (tmp_path / "out").exists()  # refused before anything was written
