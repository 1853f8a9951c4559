"""B7 (abuse): ``descend serve`` against a hostile client, one attack at a time, then a mix.

    python benchmarks/b7_serve_abuse.py [--checkpoint CKPT] [--only NAME,...] [--mix-seconds 20]

Starts ``descend serve CKPT --port 0 --no-access-log`` on 127.0.0.1 and runs each attack of
issue 18 against it, printing one row each: what was sent, the answer (status, and the start of
its JSON), the time to it, and the server's peak resident memory during the attack (VmHWM, reset
before each through /proc/PID/clear_refs, so each row is its own peak). Then the mix: four
9400x9400 16-bit PNGs at once (sent again as each is answered), 1000 connections with half-sent
headers, and 30 uploads of 9.5 MB that stall before their end, while 4 clients send a normal
image and time its answers. Reports their p50/p99, the statuses seen by every party, and the
server's peak memory over the whole mix.

Defaults: the committed tiny run ``tests/fixtures/run-0.1.0/best.pt`` and a CIFAR-10 test photo
(or a generated 32x32 PNG). Clients and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from b7_serve_load import FIXTURE, default_image  # noqa: E402
from machine import describe  # noqa: E402

SIDE = 9400  # the 16-bit PNG and TIFFs: 88 MP, under Pillow's own 89.5 MP limit


def png16(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), dtype=np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def tiff(side: int, mode: str) -> bytes:
    arr = np.zeros((side, side), dtype=np.float32 if mode == "F" else np.int32)
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "TIFF", compression="tiff_adobe_deflate")
    return buf.getvalue()


class Server:
    def __init__(self, checkpoint: str, args: list[str]) -> None:
        self.log = open("/tmp/b7_serve_abuse.stderr", "w")  # noqa: SIM115 - the server's log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "descend", "serve", checkpoint, "--port", "0", "--device",
             "cpu", "--no-access-log", *args], stdout=subprocess.PIPE, stderr=self.log,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("descend serve: http"):
            self.proc.kill()
            sys.exit(f"the server did not start: {line}")
        self.url = line.split()[2].rstrip("/")
        self.host, self.port = self.url.split("//")[1].rsplit(":", 1)

    def reset_peak(self) -> None:
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS

    def memory_mb(self, field: str = "VmHWM") -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith(field + ":")) / 1024

    def temp_bytes(self) -> int:
        """Bytes of the server's open temporary (deleted) files: spooled uploads."""
        total = 0
        fd_dir = f"/proc/{self.proc.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(f"{fd_dir}/{fd}").endswith("(deleted)"):
                    total += os.stat(f"{fd_dir}/{fd}").st_size
            except OSError:
                pass
        return total

    def open_connections(self) -> int:
        """Established TCP connections of the server's port (from /proc/net/tcp)."""
        port = f"{int(self.port):04X}"
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if local.endswith(":" + port) and state == "01":
                        count += 1
        return count

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def short(r: httpx.Response) -> str:
    try:
        text = json.dumps(r.json())
    except ValueError:
        text = repr(r.text)
    return f"{r.status_code} {text[:90]}"


async def post(http: httpx.AsyncClient, name: str, data: bytes, query: str = "",
               headers: dict[str, str] | None = None) -> tuple[httpx.Response | str, float]:
    start = time.perf_counter()
    try:
        r: httpx.Response | str = await http.post(f"/predict{query}",
                                                  files={"file": (name, data)}, headers=headers)
    except httpx.HTTPError as e:
        r = f"{type(e).__name__}"
    return r, time.perf_counter() - start


async def half_open(server: Server, n: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(n):
        try:
            _, w = await asyncio.open_connection(server.host, int(server.port))
        except OSError:
            continue
        w.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        writers.append(w)
    return writers


async def stalled_upload(server: Server, size: int) -> asyncio.StreamWriter | None:
    try:
        _, w = await asyncio.open_connection(server.host, int(server.port))
    except OSError:
        return None
    head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n")
    w.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: "
            + str(size + 200).encode() + b"\r\n\r\n" + head + b"\0" * size)
    try:
        await w.drain()
    except OSError:
        pass
    return w


async def still_open(writers: list[asyncio.StreamWriter]) -> int:
    """How many of ``writers``' connections the server has not closed."""
    await asyncio.sleep(0)
    open_ = 0
    for w in writers:
        transport = w.transport
        if not transport.is_closing() and not w._protocol._stream_reader.at_eof():  # type: ignore[attr-defined]
            open_ += 1
    return open_


async def rows(server: Server, image: bytes, only: set[str] | None) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        big = png16(SIDE)
        tiffs = {mode: tiff(SIDE, mode) for mode in ("F", "I")
                 if only is None or f"tiff-{mode}-9400" in only}

        async def row(name: str, make) -> None:  # type: ignore[no-untyped-def]
            if only and name not in only:
                return
            server.reset_peak()
            start = time.perf_counter()
            answer = await make()
            print(f"{name:18s} {time.perf_counter() - start:6.2f} s  peak RSS "
                  f"{server.memory_mb():6.0f} MB  {answer}", flush=True)

        async def one_png16() -> str:
            r, _ = await post(http, "big16.png", big)
            return f"({len(big) // 1024} KB) " + (short(r) if isinstance(r, httpx.Response) else r)

        async def four_png16() -> str:
            tasks = [asyncio.create_task(post(http, "big16.png", big)) for _ in range(4)]
            await asyncio.sleep(0.05)
            normal, seconds = await post(http, "cat.png", image)
            done = await asyncio.gather(*tasks)
            statuses = [r.status_code if isinstance(r, httpx.Response) else r for r, _ in done]
            n = normal.status_code if isinstance(normal, httpx.Response) else normal
            return f"4x big16.png: {statuses}; a normal predict meanwhile: {n} in {seconds:.3f} s"

        async def tiff_row(mode: str) -> str:
            data = tiffs[mode]
            r, _ = await post(http, f"big-{mode}.tif", data)
            return f"({len(data) // 1024} KB) " + (short(r) if isinstance(r, httpx.Response) else r)

        async def limit() -> str:
            h = (await http.get("/health")).json()
            return f"max_pixels {h['max_pixels']} for input {h['input_size']}"

        async def top_k(value: str) -> str:
            r, _ = await post(http, "cat.png", image, f"?top_k={value}")
            return short(r) if isinstance(r, httpx.Response) else r

        async def half_open_row() -> str:
            writers = await half_open(server, 3000)
            opened = len(writers)
            await asyncio.sleep(1)
            at_1 = server.open_connections()
            normal, seconds = await post(http, "cat.png", image)
            await asyncio.sleep(12)
            at_13 = server.open_connections()
            for w in writers:
                w.close()
            n = normal.status_code if isinstance(normal, httpx.Response) else normal
            return (f"{opened} opened; the server holds {at_1} after 1 s, {at_13} after 13 s; "
                    f"a normal predict at 1 s: {n} in {seconds:.3f} s")

        async def stalled_row() -> str:
            writers = [await stalled_upload(server, int(9.5 * 2**20)) for _ in range(30)]
            await asyncio.sleep(1)
            at_1 = server.temp_bytes()
            await asyncio.sleep(11)
            at_12 = server.temp_bytes()
            for w in writers:
                if w is not None:
                    w.close()
            return (f"30 x 9.5 MB uploads stalled: temp files {at_1 / 2**20:.0f} MB after 1 s, "
                    f"{at_12 / 2**20:.0f} MB after 12 s")

        async def body_300mb() -> str:
            # Sent as a browser does, reading the answer while the body goes out.
            reader, w = await asyncio.open_connection(server.host, int(server.port))
            w.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\n"
                    b"Content-Length: 300000000\r\n\r\n")
            sent, chunk = 0, b"\0" * 2**16

            async def send_body() -> None:
                nonlocal sent
                try:
                    while sent < 300_000_000:
                        w.write(chunk)
                        await asyncio.wait_for(w.drain(), 5)
                        sent += len(chunk)
                except (OSError, asyncio.TimeoutError):
                    pass

            sender = asyncio.create_task(send_body())
            try:
                answer = await asyncio.wait_for(reader.read(), 20)  # to the server's close
            except (OSError, asyncio.TimeoutError):
                answer = b""
            await sender
            w.close()
            status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
            close = b"connection: close" in answer.lower()
            return (f"{status or 'no answer read'}; Connection: close {close}; the client got "
                    f"{sent / 2**20:.1f} MB out before the server stopped reading")

        async def evil_host() -> str:
            r = await http.get("/health", headers={"host": "evil.example"})
            return f"{short(r)}; echoed: {'evil' in r.text}"

        async def health() -> str:
            return f"checkpoint: {(await http.get('/health')).json()['checkpoint']!r}"

        async def long_name() -> str:
            r, _ = await post(http, "a" * 8192 + ".png", image)
            return short(r) if isinstance(r, httpx.Response) else r

        await row("png16-9400", one_png16)
        await row("png16-9400 x4", four_png16)
        await row("tiff-F-9400", lambda: tiff_row("F"))
        await row("tiff-I-9400", lambda: tiff_row("I"))
        await row("pixel-limit", limit)
        await row("top_k=²", lambda: top_k("%C2%B2"))
        await row("top_k=5000 digits", lambda: top_k("9" * 5000))
        await row("half-open x3000", half_open_row)
        await row("stalled x30", stalled_row)
        await row("300 MB body", body_300mb)
        await row("Host: evil", evil_host)
        await row("/health", health)
        await row("8 KB file name", long_name)


async def mix(server: Server, image: bytes, seconds: float) -> None:
    big = png16(SIDE)
    statuses: dict[str, dict[str, int]] = {"normal": {}, "big16": {}}
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def count(kind: str, r: httpx.Response | str) -> None:
        key = str(r.status_code) if isinstance(r, httpx.Response) else r
        statuses[kind][key] = statuses[kind].get(key, 0) + 1

    async def normal() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            while time.monotonic() < stop:
                r, s = await post(http, "cat.png", image)
                count("normal", r)
                if isinstance(r, httpx.Response) and r.status_code == 200:
                    latencies.append(s)

    async def bomber() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            while time.monotonic() < stop:
                r, _ = await post(http, "big16.png", big)
                count("big16", r)

    async def half_opens() -> None:
        writers = await half_open(server, 1000)
        while time.monotonic() < stop:
            await asyncio.sleep(0.5)
        for w in writers:
            w.close()

    async def stalls() -> None:
        writers = [await stalled_upload(server, int(9.5 * 2**20)) for _ in range(30)]
        while time.monotonic() < stop:
            await asyncio.sleep(0.5)
        for w in writers:
            if w is not None:
                w.close()

    server.reset_peak()
    await asyncio.gather(*(bomber() for _ in range(4)), half_opens(), stalls(),
                         *(normal() for _ in range(4)))
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else []
    p50 = f"{q[49] * 1000:.0f}" if q else "n/a"
    p99 = f"{q[98] * 1000:.0f}" if q else "n/a"
    print(f"mix {seconds:.0f} s: normal predicts {len(latencies)} answered 200, p50 {p50} ms, "
          f"p99 {p99} ms, max {max(latencies, default=0) * 1000:.0f} ms; statuses {statuses}; "
          f"server peak RSS {server.memory_mb():.0f} MB", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(FIXTURE))
    parser.add_argument("--only", help="comma-separated row names (default: all); 'mix' for "
                        "the mix alone")
    parser.add_argument("--mix-seconds", type=float, default=20)
    parser.add_argument("--server-arg", action="append", default=[],
                        help="passed to descend serve, e.g. --server-arg=--max-pixels=100000000")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    name, image = default_image()
    print(describe())
    print(f"checkpoint {args.checkpoint}; normal image {name} ({len(image)} bytes)")
    server = Server(args.checkpoint, args.server_arg)
    try:
        print(f"server {server.url}: RSS {server.memory_mb('VmRSS'):.0f} MB after start")
        if only is None or only - {"mix"}:
            asyncio.run(rows(server, image, only))
        if only is None or "mix" in only:
            asyncio.run(mix(server, image, args.mix_seconds))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
