"""B2: the input pipeline. Augmented CIFAR-10 training images per second, ours against the
seed's per-sample pipeline, in one run; decoding and cache loading; and whether training is
data-limited.

    python benchmarks/b2_input_pipeline.py --data ../shared/datasets

1. Throughput (random crop with padding 4, horizontal flip, normalize; batch 512; full epochs
   of the 50,000 training images, nothing else done with the batches):
   - seed: torchvision's CIFAR10 way, a Dataset of decoded uint8 HWC arrays whose __getitem__
     makes a PIL image, then RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
     Normalize, batched by a DataLoader, with 0 worker processes (the seed's setting) and 2;
   - naive batched: whole-batch tensor ops done plainly (float conversion first, crop by two
     gathers, flip by torch.where, normalize by sub and div), as descend's loader did before;
   - descend: `BatchLoader` with ``--augment crop:4,hflip``;
   - with --streaming, descend's `StreamingLoader` (2 worker processes decoding the PNG files
     per sample, for datasets too big for memory), a fifth of an epoch per round, timed after
     the others (its workers decode ahead and would slow whatever ran next).
   Repeats are interleaved (every pipeline once per round) and medians reported.
2. Decoding: the first load of CIFAR-10's 60,000 PNG files into a fresh cache (our process
   pool, and the thread pool for comparison), and later loads from the cache, each in a fresh
   Python process (interpreter and torch import not counted); a big JPEG fitted to 64x64 with
   and without the reduced-scale draft decode.
3. Is training data-limited? Median step time (forward, backward, SGD step) of the `mlp` and
   `cnn` models on one fixed batch (compute only), fed by the loader, and the loader alone.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402
from seed_pipeline import ArrayCIFAR  # noqa: E402

from descend.data.augment import parse_augment  # noqa: E402
from descend.data.datasets import load_dataset  # noqa: E402
from descend.data.loader import BatchLoader, LoaderOptions  # noqa: E402
from descend.data.splits import ImageFiles  # noqa: E402
from descend.data.stats import train_stats  # noqa: E402

BATCH = 512
SPEC = "crop:4,hflip"


# --- 1. throughput ------------------------------------------------------------------------------

def seed_loader(images: torch.Tensor, labels: torch.Tensor, mean: list[float],
                std: list[float], workers: int) -> DataLoader:
    t = transforms.Compose([transforms.RandomCrop(32, padding=4),
                            transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                            transforms.Normalize(mean, std)])
    hwc = images.permute(0, 2, 3, 1).contiguous().numpy()  # as torchvision keeps CIFAR-10
    return DataLoader(ArrayCIFAR(hwc, labels.tolist(), t), batch_size=BATCH, shuffle=True,
                      num_workers=workers)


def naive_batches(images: torch.Tensor, labels: torch.Tensor, mean: list[float],
                  std: list[float], epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Whole-batch ops written plainly: float first, crop by gathers, flip by where."""
    g = torch.Generator().manual_seed(epoch)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    order = torch.randperm(len(labels), generator=g)
    p = 4
    for b in range(0, len(labels), BATCH):
        idx = order[b:b + BATCH]
        x = images[idx].float().div_(255)
        n, c, h, w = x.shape
        xp = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=g)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        x = xp.gather(2, rows.expand(n, c, h, w + 2 * p)).gather(3, cols.expand(n, c, h, w))
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        yield x.sub_(m).div_(s), labels[idx]


def time_epoch(batches: Callable[[int], object], epoch: int) -> float:
    start = time.perf_counter()
    n = 0
    for _, y in batches(epoch):  # type: ignore[attr-defined]
        n += len(y)
    return n / (time.perf_counter() - start)


def throughput(images: torch.Tensor, labels: torch.Tensor, mean: list[float], std: list[float],
               repeats: int, stream_files: ImageFiles | None = None) -> dict[str, float]:
    ours = BatchLoader(ImageTensorsView(images, labels),
                       LoaderOptions(BATCH, mean, std, shuffle=True, augment=parse_augment(SPEC),
                                     seed=0))

    def ours_epoch(e: int) -> BatchLoader:
        ours.set_epoch(e)
        return ours

    streamed = None
    if stream_files is not None:
        from descend.data.streaming import StreamingLoader

        streamed = StreamingLoader(stream_files, LoaderOptions(
            BATCH, mean, std, shuffle=True, augment=parse_augment(SPEC), seed=0, workers=2))

    def streamed_part(e: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert streamed is not None
        streamed.set_epoch(e)
        for b, batch in enumerate(streamed):  # a fifth of an epoch: it decodes PNG files
            if b == len(streamed) // 5:
                break
            yield batch

    seed0 = seed_loader(images, labels, mean, std, 0)
    seed2 = seed_loader(images, labels, mean, std, 2)
    pipelines: dict[str, Callable[[int], object]] = {
        "seed, 0 workers": lambda e: seed0,
        "seed, 2 workers": lambda e: seed2,
        "naive batched tensors": lambda e: naive_batches(images, labels, mean, std, e),
        "descend BatchLoader": ours_epoch,
    }
    rates: dict[str, list[float]] = {k: [] for k in pipelines}
    time_epoch(ours_epoch, 99)  # warm-up: first-touch of the pages, allocator
    for r in range(repeats):
        names = list(pipelines) if r % 2 == 0 else list(reversed(pipelines))
        for name in names:
            rates[name].append(time_epoch(pipelines[name], r))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()),
              flush=True)
    if streamed is not None:
        # Apart from the others: its persistent workers keep decoding ahead after a round and
        # would slow whatever ran next.
        name = "descend streaming, 2 workers"
        time_epoch(streamed_part, 98)  # warm-up: start the workers
        rates[name] = [time_epoch(streamed_part, r) for r in range(max(3, repeats // 2))]
        print(f"  {name}: " + ", ".join(f"{v:,.0f}" for v in rates[name]), flush=True)
    return {k: statistics.median(v) for k, v in rates.items()}


class ImageTensorsView:
    """The two fields BatchLoader reads, without the dataset object around them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)


# --- 2. decoding --------------------------------------------------------------------------------

LOAD = """
import json, sys, time
from descend.data.datasets import load_dataset
import descend.data.folder as folder
if sys.argv[3] == "threads":
    folder.PROCESS_MIN_FILES = 10**12
start = time.perf_counter()
d = load_dataset("cifar10", root=sys.argv[1], cache=sys.argv[2], progress=False, download=False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "train": len(d.train), "test": len(d.val)}))
"""


def load_in_fresh_process(root: str, cache: str, pool: str = "processes") -> float:
    out = subprocess.run([sys.executable, "-c", LOAD, root, cache, pool], check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["train"], result["test"]) == (50000, 10000), result
    return float(result["seconds"])


def decoding(root: str, repeats: int, decode_repeats: int) -> dict[str, object]:
    first: dict[str, list[float]] = {"processes": [], "threads": []}
    cached: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(decode_repeats):
            for pool in (("processes", "threads") if r % 2 == 0 else ("threads", "processes")):
                cache = os.path.join(tmp, f"{pool}-{r}")
                first[pool].append(load_in_fresh_process(root, cache, pool))
                print(f"  first decode, {pool}: {first[pool][-1]:.2f} s", flush=True)
        cache = os.path.join(tmp, "processes-0")
        for _ in range(repeats):
            cached.append(load_in_fresh_process(root, cache))
        print("  later loads: " + ", ".join(f"{t:.3f}" for t in cached) + " s", flush=True)
    return {"first_processes": statistics.median(first["processes"]),
            "first_threads": statistics.median(first["threads"]),
            "cached": statistics.median(cached), "cached_all": cached}


def jpeg_draft(repeats: int) -> dict[str, float]:
    """A 3000x2000 photo-like JPEG fitted to 64x64: draft decode against the full decode."""
    from descend.data.images import fit, load_pixels

    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.resize((3000, 2000), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
    data = buf.getvalue()

    def full() -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(fit(im.convert("RGB"), (64, 64)))

    times: dict[str, list[float]] = {"full": [], "draft": []}
    for _ in range(repeats):
        for name, fn in (("full", full), ("draft", lambda: load_pixels(data, (64, 64)))):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    diff = np.abs(full().astype(float) - load_pixels(data, (64, 64)).transpose(1, 2, 0)).mean()
    return {"full_ms": 1e3 * statistics.median(times["full"]),
            "draft_ms": 1e3 * statistics.median(times["draft"]), "mean_abs_diff": float(diff)}


# --- 3. data-limited? ---------------------------------------------------------------------------

def step_times(train: object, mean: list[float], std: list[float], model_name: str,
               repeats: int, steps: int) -> dict[str, float]:
    from descend.models import ModelSpec, create_model

    torch.manual_seed(0)
    model = create_model(ModelSpec(model_name, 10, 3, (32, 32), {}))
    conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if conv:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = BatchLoader(train, LoaderOptions(  # type: ignore[arg-type]
        BATCH, mean, std, shuffle=True, augment=parse_augment(SPEC), seed=0, channels_last=conv))
    fixed_x, fixed_y = next(iter(loader))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def compute_only() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step(fixed_x, fixed_y)
        return (time.perf_counter() - start) / steps

    epoch = [0]

    def with_loader(train_step: bool = True) -> float:
        epoch[0] += 1
        loader.set_epoch(epoch[0])
        it = iter(loader)
        start = time.perf_counter()
        for _ in range(steps):
            x, y = next(it)
            if train_step:
                step(x, y)
        return (time.perf_counter() - start) / steps

    timings: dict[str, Callable[[], float]] = {
        "compute_ms": compute_only, "fed_ms": with_loader,
        "loader_ms": lambda: with_loader(False)}
    for fn in timings.values():
        fn()  # warm-up
    out: dict[str, list[float]] = {k: [] for k in timings}
    for r in range(repeats):
        for name in (list(timings) if r % 2 == 0 else list(reversed(timings))):
            out[name].append(1e3 * timings[name]())
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("DESCEND_DATA", "../shared/datasets"))
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (throughput)")
    p.add_argument("--decode-repeats", type=int, default=1,
                   help="first decodes per pool (each ~15 s)")
    p.add_argument("--steps", type=int, default=20, help="training steps per timing")
    p.add_argument("--skip", nargs="*", default=[], choices=["throughput", "decode", "steps"])
    p.add_argument("--streaming", action="store_true",
                   help="also time the streaming loader (2 workers decoding the PNG files)")
    args = p.parse_args()
    print(describe(), flush=True)
    root = str(Path(args.data).resolve())
    results: dict[str, object] = {"machine": describe()}

    if "decode" not in args.skip:
        print("decoding CIFAR-10 (60,000 PNG files) and loading it from the cache:", flush=True)
        results["decode"] = decoding(root, args.repeats, args.decode_repeats)
        results["jpeg_draft"] = jpeg_draft(max(5, args.repeats))
        print(f"  big JPEG to 64x64: {results['jpeg_draft']}", flush=True)

    with tempfile.TemporaryDirectory() as cache:
        data = load_dataset("cifar10", root=root, cache=cache, progress=False, download=False)
        mean, std = train_stats(data)
        train = data.train
        images = torch.as_tensor(train.images).clone()  # in RAM, as every pipeline has it
        labels = train.labels.clone()
        files = load_dataset("cifar10", root=root, cache=cache, progress=False, download=False,
                             memory_budget=0).train if args.streaming else None
    if "throughput" not in args.skip:
        print(f"throughput, augmented training images/s ({SPEC}, normalize, batch {BATCH}):",
              flush=True)
        rates = throughput(images, labels, mean, std, args.repeats, files)  # type: ignore[arg-type]
        results["throughput"] = rates
        base = rates["seed, 0 workers"]
        for name, rate in rates.items():
            print(f"  {name:<24} {rate:>10,.0f} img/s  {rate / base:6.1f}x seed(0 workers)  "
                  f"{rate / rates['seed, 2 workers']:6.1f}x seed(2 workers)")
    if "steps" not in args.skip:
        print(f"step time, batch {BATCH}, compute only against fed by the loader:", flush=True)
        view = ImageTensorsView(images, labels)
        for name in ("mlp", "cnn"):
            t = step_times(view, mean, std, name, args.repeats, args.steps)
            results[f"steps_{name}"] = t
            print(f"  {name}: compute only (one fixed batch) {t['compute_ms']:.1f} ms, fed by "
                  f"the loader {t['fed_ms']:.1f} ms (x{t['fed_ms'] / t['compute_ms']:.3f}), "
                  f"the loader alone {t['loader_ms']:.2f} ms "
                  f"({100 * t['loader_ms'] / t['fed_ms']:.1f}% of a fed step)", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
