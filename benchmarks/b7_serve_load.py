"""B7: ``descend serve`` under load: concurrent clients sending a real image to ``/predict``.

    python benchmarks/b7_serve_load.py [--checkpoint CKPT] [--image FILE] [--clients 16]
                                       [--requests 800] [--server-arg=--max-batch-size=1]

Starts ``descend serve CKPT --port 0`` as a subprocess on 127.0.0.1, waits for its URL line,
sends one warm-up request, then ``--requests`` POST /predict of the same image from
``--clients`` concurrent clients (httpx, asyncio, one kept-alive connection each). Meanwhile a
probe asks GET /health every 50 ms: its latency shows whether predictions block the server's
event loop. Reports requests per second, client-side latency percentiles, errors (an answer
other than 200, or a failed connection), the server's resident memory (VmRSS of its process)
after start-up, after the warm-up and after the load, and the sizes of the batches the model ran
(from its ``/metrics``). ``--server-arg`` passes a flag to ``descend serve``: dynamic batching
against none is ``--server-arg=--max-batch-size=1``. The server's access log goes to
``/tmp/b7_serve_load.stderr``.

Defaults: the committed tiny run ``tests/fixtures/run-0.1.0/best.pt`` (a 3-class cnn at 16x16,
so the figures are those of the HTTP, upload and decode path more than of the model), and the
first CIFAR-10 test photo of a cat under ``$DESCEND_DATA`` (or ``../shared/datasets``); pass a
checkpoint of your own run for a real model. Clients and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "run-0.1.0" / "best.pt"
PROBE_EVERY = 0.05  # seconds between /health probes during the load


def default_image() -> tuple[str, bytes]:
    """A CIFAR-10 test photo when the datasets are here, else a generated 32x32 PNG."""
    data = Path(os.environ.get("DESCEND_DATA") or ROOT.parent / "shared" / "datasets")
    cats = sorted((data / "cifar10" / "test" / "cat").glob("*.png"))[:1]
    if cats:
        return str(cats[0]), cats[0].read_bytes()
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return "generated 32x32 noise PNG", buf.getvalue()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def start_server(checkpoint: str, device: str,
                 extra: Sequence[str] = ()) -> tuple[subprocess.Popen[str], str]:
    # The access log (a line per request) goes to a file: a pipe nobody reads would fill and
    # stop the server.
    log = open("/tmp/b7_serve_load.stderr", "w")  # noqa: SIM115 - open while the server runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "descend", "serve", checkpoint, "--port", "0", "--device",
         device, *extra], stdout=subprocess.PIPE, stderr=log, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()  # "descend serve: http://127.0.0.1:PORT/ (...)"
    if not line.startswith("descend serve: http"):
        proc.kill()
        sys.exit(f"the server did not start: {line}{Path(log.name).read_text()[-2000:]}")
    return proc, line.split()[2].rstrip("/")


def batch_sizes(url: str) -> str:
    """The mean size of the model's batches, from the server's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("descend_batch_size_")}
    count = values.get("descend_batch_size_count", 0)
    total = values.get("descend_batch_size_sum", 0)
    return f"{count:.0f} batches, mean size {total / count:.2f}" if count else "no batches"


async def load(url: str, image: bytes, name: str, clients: int, requests: int
               ) -> tuple[list[float], list[str], list[float], float]:
    """(latencies of the good answers, errors, /health latencies, seconds for all)."""
    latencies: list[float] = []
    errors: list[str] = []
    probes: list[float] = []
    issued = 0
    done = asyncio.Event()

    async def client() -> None:
        nonlocal issued
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while issued < requests:
                issued += 1
                start = time.perf_counter()
                try:
                    r = await http.post("/predict", files={"file": (name, image)})
                except httpx.HTTPError as e:
                    errors.append(f"{type(e).__name__}: {e}")
                    continue
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors.append(f"{r.status_code}: {r.text[:200]}")

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while not done.is_set():
                start = time.perf_counter()
                await http.get("/health")
                probes.append(time.perf_counter() - start)
                await asyncio.sleep(PROBE_EVERY)

    prober = asyncio.create_task(probe())
    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - start
    done.set()
    await prober
    return latencies, errors, probes, seconds


def ms(values: list[float], q: int) -> str:
    """The q-th percentile of ``values`` (seconds), in ms."""
    if len(values) < 2:
        return "n/a"
    return f"{statistics.quantiles(values, n=100, method='inclusive')[q - 1] * 1000:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(FIXTURE),
                        help="a best.pt (default: the committed tiny 0.1.0 run)")
    parser.add_argument("--image", help="the image sent (default: a CIFAR-10 test cat)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="a flag for descend serve, e.g. --server-arg=--max-batch-size=1")
    args = parser.parse_args()
    if args.image:
        name, image = args.image, Path(args.image).read_bytes()
    else:
        name, image = default_image()

    print(describe())
    print(f"httpx {httpx.__version__}; checkpoint {args.checkpoint}; image {name} "
          f"({len(image)} bytes); {args.clients} clients, {args.requests} requests, "
          f"device {args.device}; server flags {' '.join(args.server_arg) or 'none'}")
    proc, url = start_server(args.checkpoint, args.device, args.server_arg)
    try:
        rss_start = rss_mb(proc.pid)
        warm = httpx.post(f"{url}/predict", files={"file": (Path(name).name, image)},
                          timeout=60)
        warm.raise_for_status()
        print(f"server {url}: warm-up answer {warm.json()['predictions'][0]}")
        rss_warm = rss_mb(proc.pid)
        latencies, errors, probes, seconds = asyncio.run(
            load(url, image, Path(name).name, args.clients, args.requests))
        rss_after = rss_mb(proc.pid)
        batches = batch_sizes(url)
    finally:
        proc.send_signal(signal.SIGINT)  # a graceful stop: "descend serve: stopped"
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    print(f"requests/s      {len(latencies) / seconds:8.1f}  ({len(latencies)} answered 200 in "
          f"{seconds:.2f} s)")
    print(f"latency ms      p50 {ms(latencies, 50)}  p90 {ms(latencies, 90)}  "
          f"p99 {ms(latencies, 99)}  max {max(latencies, default=0) * 1000:.1f}")
    print(f"/health ms      p50 {ms(probes, 50)}  p99 {ms(probes, 99)}  max "
          f"{max(probes, default=0) * 1000:.1f}  ({len(probes)} probes during the load)")
    print(f"errors          {len(errors)}" + (f"  first: {errors[0]}" if errors else ""))
    print(f"server RSS MB   {rss_start:.1f} after start, {rss_warm:.1f} after warm-up, "
          f"{rss_after:.1f} after the load")
    print(f"model batches   {batches}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
