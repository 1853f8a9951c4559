"""B5: the same crawl with one download at a time and with the default concurrency.

Every answer of the local fake web (search pages and images) is delayed by 50 ms, standing in
for network latency; both crawls run side by side in one process, alternating, so that the
ratio is measured under the same machine load. No rate limit, so concurrency alone differs.

    python benchmarks/b5_crawl_concurrency.py [--images 60] [--delay 0.05] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import PIL
from machine import describe  # benchmarks/machine.py, beside this script

from descend.crawl import ClassSpec, CrawlConfig, crawl

# The fake web is a test helper, not part of descend: import it from the repository's tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.fakeweb import FakeWeb, pictures  # noqa: E402

DEFAULT_CONCURRENCY = CrawlConfig(classes=[], out=Path()).concurrency


def one_crawl(web: FakeWeb, concurrency: int, per_class: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = CrawlConfig([ClassSpec("cat", ("猫",)), ClassSpec("dog", ("狗",))],
                             Path(tmp) / "out", per_class=per_class, base_url=web.url,
                             concurrency=concurrency, progress=False)
        start = time.perf_counter()
        report = crawl(config)
        seconds = time.perf_counter() - start
        kept = sum(c.kept for c in report.classes)
        assert kept == 2 * per_class, f"crawl kept {kept}, expected {2 * per_class}"
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="in all, over two classes")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds added per answer")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    per_class = args.images // 2

    print(describe())
    print(f"Pillow {PIL.__version__}, httpx {httpx.__version__}, {platform.system()}")
    print(f"crawl: {args.images} images (2 classes x {per_class}), 96x96 JPEG, "
          f"+{args.delay * 1000:.0f} ms per answer, local server, no rate limit")
    times: dict[int, list[float]] = {1: [], DEFAULT_CONCURRENCY: []}
    with FakeWeb(delay=args.delay) as web:
        for k, word in enumerate(("猫", "狗")):
            web.baidu[word] = [web.add(f"/{k}/{i}.jpg", b)
                               for i, b in enumerate(pictures(per_class, start=1000 * k))]
        one_crawl(web, DEFAULT_CONCURRENCY, per_class)  # warm-up: imports, thread pool
        for _ in range(args.repeats):
            for concurrency in times:
                times[concurrency].append(one_crawl(web, concurrency, per_class))
    print(f"{'concurrency':>11}  {'median s':>8}  {'runs s':<24}  images/s")
    for concurrency, runs in times.items():
        median = statistics.median(runs)
        print(f"{concurrency:>11}  {median:8.2f}  {', '.join(f'{t:.2f}' for t in runs):<24}  "
              f"{args.images / median:7.1f}")
    ratio = statistics.median(times[1]) / statistics.median(times[DEFAULT_CONCURRENCY])
    print(f"speed-up of concurrency {DEFAULT_CONCURRENCY} over 1: {ratio:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
