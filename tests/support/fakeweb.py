"""A local stand-in for the image web: Baidu's and Bing's search answers plus the images.

Tests, the B5 benchmark and anyone trying the crawler offline use it; it never touches the
internet. It lives with the tests, not in the package: no user of descend needs a fake web.
``python -m tests.support.fakeweb`` (from the repository root) serves a small demo site and
prints the ``descend crawl`` command that collects from it.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image


@dataclass
class Route:
    """How the server answers one path."""

    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # send no Content-Length: the client must count while streaming
    delay: float = 0.0  # seconds before answering (a slow server)
    failures: list[int] = field(default_factory=list)  # statuses answered first, one per request
    retry_after: str | None = None  # sent with each failure


class FakeWeb:
    """A threaded HTTP server on 127.0.0.1 (a free port) with a log of every request.

    ``host`` puts it on another local address: ``127.0.0.2`` (any 127/8 address is this
    machine on Linux) or ``::1``, for tests of which addresses the crawler may reach. ``port``
    fixes the port (the tutorial's commands name it); 0 picks a free one.
    """

    def __init__(self, delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.delay = delay  # added to every response, like network latency
        self.routes: dict[str, Route] = {}
        self.baidu: dict[str, list[str]] = {}
        self.baidu_shape = "seed"  # or "real": today's {"data": [{"thumbURL": ...}, {}]}
        self.bing: dict[str, list[str]] = {}
        # Search word -> the answer to send for it as it is, instead of a generated page
        # (Baidu and Bing alike): a hostile or broken results page for one word only.
        self.raw_pages: dict[str, Route] = {}
        self.requests: list[str] = []  # path?query of each request, on arrival
        self.headers: list[dict[str, str]] = []  # the headers of each request, in that order
        self.served: list[str] = []  # path of each response sent completely
        self._lock = threading.Lock()
        server = _QuietServer6 if ":" in host else _QuietServer
        self._server = server((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> FakeWeb:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeWeb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, path: str, route: Route | bytes) -> str:
        """Serve ``route`` (or these image bytes) at ``path``; returns the full URL."""
        self.routes[path] = route if isinstance(route, Route) else Route(route)
        return self.url + path

    def requested(self, path: str) -> int:
        """How many requests asked for ``path`` (query ignored)."""
        return sum(1 for r in self.requests if r.split("?")[0] == path)

    def counts(self) -> Counter[str]:
        return Counter(r.split("?")[0] for r in self.requests)

    def _log(self, target: list[str], item: str) -> None:
        with self._lock:
            target.append(item)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up early (caps, timeouts, kills) are expected here


class _QuietServer6(_QuietServer):
    address_family = socket.AF_INET6


def can_serve_on(host: str) -> bool:
    """Whether this machine has the local address ``host`` (``::1`` needs IPv6)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


def _handler(web: FakeWeb) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle's algorithm on, the client's
        # delayed ACK would add ~40 ms to every keep-alive answer, which no real server has.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:  # quiet tests
            pass

        def do_GET(self) -> None:
            with web._lock:
                web.requests.append(self.path)
                web.headers.append({k.lower(): v for k, v in self.headers.items()})
            if web.delay:
                time.sleep(web.delay)
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            word = query.get("word", query.get("q"))
            if parts.path in web.routes:  # first, so a test can break the search pages too
                self._route(web.routes[parts.path])
            elif parts.path in ("/search/acjson", "/images/search") and word in web.raw_pages:
                self._route(web.raw_pages[word])
            elif parts.path == "/search/acjson":
                self._send(200, _baidu_page(web, query), "application/json")
            elif parts.path == "/images/search":
                self._send(200, _bing_page(web, query), "text/html; charset=utf-8")
            else:
                self._send(404, b"<html><body>not found</body></html>", "text/html")
            web._log(web.served, parts.path)

        def _route(self, route: Route) -> None:
            if route.delay:
                time.sleep(route.delay)
            with web._lock:
                failure = route.failures.pop(0) if route.failures else None
            if failure is not None:
                extra = {"Retry-After": route.retry_after} if route.retry_after else {}
                self._send(failure, b"busy", "text/plain", extra)
                return
            self._send(route.status, route.body, route.content_type, route.headers, route.chunked)

        def _send(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None, chunked: bool = False) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(body), 16384):
                        piece = body[i:i + 16384]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a cap or a timeout)

    return Handler


def _baidu_page(web: FakeWeb, query: dict[str, str]) -> bytes:
    urls = web.baidu.get(query.get("word", ""), [])
    start, size = int(query.get("pn", 0)), int(query.get("rn", 30))
    page = urls[start:start + size]
    if web.baidu_shape == "real":
        doc: dict[str, object] = {
            "data": [{"thumbURL": u, "middleURL": u} for u in page] + [{}]
        }
    else:
        doc = {"data": {"images": [{"thumburl": u} for u in page]}}
    return json.dumps(doc, ensure_ascii=False).encode()


def _bing_page(web: FakeWeb, query: dict[str, str]) -> bytes:
    urls = web.bing.get(query.get("q", ""), [])
    first, count = int(query.get("first", 1)), int(query.get("count", 35))
    items = []
    for u in urls[first - 1:first - 1 + count]:
        meta = html.escape(json.dumps({"murl": u, "turl": u + "?thumb"}), quote=True)
        items.append(f'<li><div class="iuscp"><a class="iusc" m="{meta}" href="/images/search?'
                     f'view=detailV2"><img class="mimg" src="{html.escape(u)}"></a></div></li>')
    return ("<!DOCTYPE html><html><body><ul class=\"dgControl\">" + "".join(items)
            + "</ul></body></html>").encode()


def picture(seed: int, size: tuple[int, int] = (96, 96),
            tint: tuple[int, int, int] = (128, 128, 128)) -> Image.Image:
    """A smooth random picture: distinct seeds give perceptual hashes far apart."""
    rng = np.random.default_rng(seed)
    # An 8x8 grid of random colours, smoothly enlarged: enough detail that, as with photos,
    # re-encodes stay within a few bits of perceptual hash while other seeds land far away.
    grid = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")
    smooth = np.asarray(grid.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    mixed = 0.7 * smooth + 0.3 * np.asarray(tint, dtype=np.float32)
    return Image.fromarray(mixed.clip(0, 255).astype(np.uint8), "RGB")


def pictures(n: int, start: int = 0, tint: tuple[int, int, int] = (128, 128, 128)) -> list[bytes]:
    """``n`` distinct JPEG pictures (seeds ``start``, ``start + 1``, ...)."""
    return [jpeg(picture(start + i, tint=tint)) for i in range(n)]


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def gzipped_zeros(mib: int) -> bytes:
    """A valid gzip stream of ``mib`` MiB of zero bytes, about 1 kB per MiB, made in well under
    a second without compressing gigabytes: after a full flush deflate forgets its past, so
    every further MiB of zeros compresses to the very same bytes, written out once and repeated.
    ``gzip.compress(gzipped_zeros(1024))`` is a 2.5 kB body that inflates to 1 GiB in two steps.
    """
    assert mib >= 3
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw: header and trailer below
    first = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeat = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    last = deflate.compress(zeros) + deflate.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, no mtime
    trailer = struct.pack("<II", crc, (mib << 20) & 0xFFFFFFFF)
    return header + first + repeat * (mib - 2) + last + trailer


def demo_site(web: FakeWeb, per_class: int = 40) -> dict[str, str]:
    """Fill ``web`` with a two-class demo (猫 reddish, 狗 bluish) and bad answers among them.

    Returns class name -> search word.
    """
    words = {"cat": "猫", "dog": "狗"}
    tints = {"cat": (230, 60, 40), "dog": (40, 80, 230)}
    lists: dict[str, list[str]] = {}
    for k, (name, word) in enumerate(words.items()):
        tint = tints[name]
        good = [web.add(f"/img/{name}/{i}.jpg", jpeg(picture(1000 * k + i, tint=tint)))
                for i in range(per_class)]
        bad = [
            good[0],  # the same URL twice in the results
            web.add(f"/img/{name}/copy.jpg", jpeg(picture(1000 * k, tint=tint).resize((80, 80)),
                                                  quality=60)),  # a resized, re-encoded copy
            web.add(f"/img/{name}/error.jpg", Route(
                b"<html><body>403 Forbidden</body></html>", content_type="text/html")),
            web.add(f"/img/{name}/tiny.jpg", jpeg(picture(7, size=(16, 16)))),
            web.url + f"/img/{name}/gone.jpg",  # 404
            "ftp://example.com/picture.jpg",
        ]
        # One bad answer after every four good ones, as search results mix them.
        lists[word] = [u for i, g in enumerate(good)
                       for u in ([g, bad[i // 4]] if i % 4 == 3 and i // 4 < len(bad) else [g])]
    lists["狗"].insert(2, lists["猫"][1])  # a cat picture among the dogs: kept once, as cat
    web.baidu.update(lists)
    web.bing.update(lists)
    return words


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake image-search site locally.")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to each answer")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free)")
    args = parser.parse_args(argv)
    with FakeWeb(delay=args.delay, port=args.port) as web:
        words = demo_site(web, args.per_class)
        classes = " ".join(f"--class {k}={w}" for k, w in words.items())
        print(f"serving on {web.url}; try:\n  descend crawl {classes} --per-class 30 "
              f"--out /tmp/pets --base-url {web.url}\nCtrl-C stops.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
