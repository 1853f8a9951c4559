"""B3 on a GPU: CIFAR-10 to 94% mean test accuracy, descend against airbench's train94, on the
same card in the same call.

The GPU machine sees neither ../shared nor the network, so the decoded data travels in parts
small enough for the device tool (64 MiB per call), then is rebuilt there::

    # here: decoded CIFAR-10 as four .npz parts of under 64 MiB (train in three, test in one)
    python benchmarks/b3_gpu.py pack --data ../shared/datasets --out b3parts
    # on the device, one part per call (a warm machine keeps /tmp between calls):
    python benchmarks/b3_gpu.py unpack --parts b3parts --root /tmp/b3data
    # then: airbench's train.pt/test.pt and descend's class folders are in /tmp/b3data
    python benchmarks/b3_gpu.py run --root /tmp/b3data --runs 5 --airbench airbench-0.1.8

`run` warms both up once, then alternates airbench and descend runs, timing each on the card
(training only: data already on the GPU for airbench, already decoded and cached for descend)
and reporting mean test accuracy (airbench with its TTA level 2, descend with its model's flip
TTA) and mean seconds. Without CUDA, `run` skips airbench and trains descend once on the CPU
with a tiny budget: the proof that the script works, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402
from results import final_test_acc  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_PARTS = 3
# An untuned guess for a GPU (no GPU was lent while it was written): airbench94's widths and
# batch, ten epochs, compiled. Change it with --descend-args.
DESCEND_ARGS = "--model-arg widths=[64,256,256] --batch-size 1024 --epochs 10 --compile"


def read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for f in sorted((root / "cifar10" / split / name).glob("*.png")):
            images.append(np.asarray(Image.open(f).convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def pack(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    train, test = read_split(data, "train"), read_split(data, "test")
    for i, index in enumerate(np.array_split(np.arange(len(train[1])), TRAIN_PARTS)):
        np.savez(out / f"train{i}.npz", images=train[0][index], labels=train[1][index])
    np.savez(out / "test.npz", images=test[0], labels=test[1])
    for f in sorted(out.glob("*.npz")):
        print(f"{f}: {f.stat().st_size / 2**20:.1f} MiB")


def unpack(parts: Path, root: Path) -> None:
    """Gather the parts (from this or earlier calls) into ``root``; write the datasets once
    every part is there."""
    stash = root / "parts"
    stash.mkdir(parents=True, exist_ok=True)
    for f in parts.glob("*.npz"):
        (stash / f.name).write_bytes(f.read_bytes())
    have = sorted(p.name for p in stash.glob("*.npz"))
    need = [f"train{i}.npz" for i in range(TRAIN_PARTS)] + ["test.npz"]
    if any(n not in have for n in need):
        print(f"have {have}; waiting for {[n for n in need if n not in have]}")
        return
    splits = {"train": [np.load(stash / f"train{i}.npz") for i in range(TRAIN_PARTS)],
              "test": [np.load(stash / "test.npz")]}
    for split, loaded in splits.items():
        images = np.concatenate([z["images"] for z in loaded])
        labels = np.concatenate([z["labels"] for z in loaded])
        torch.save({"images": torch.from_numpy(images), "labels": torch.from_numpy(labels),
                    "classes": CLASSES}, root / f"{split}.pt")  # airbench's CifarLoader format
        for k, name in enumerate(CLASSES):  # descend's split layout: cifar10/SPLIT/CLASS/*.png
            folder = root / "cifar10" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in np.flatnonzero(labels == k):
                Image.fromarray(images[j]).save(folder / f"{j:05d}.png", compress_level=1)
        print(f"{split}: {len(labels)} images written to {root}")


def airbench_run(root: Path, warmup: bool) -> tuple[float, float]:
    """(seconds of train94 on the card, test accuracy with TTA level 2)."""
    import airbench

    here = Path.cwd()
    try:
        os.chdir(root.parent)  # train94 reads ./cifar10/train.pt
        if warmup:
            airbench.warmup94(verbose=False)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model = airbench.train94(verbose=False)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        test = airbench.CifarLoader(str(root), train=False, batch_size=2000)
        return seconds, airbench.evaluate(model, test, tta_level=2)
    finally:
        os.chdir(here)


def descend_run(root: Path, extra: str, seed: int, out: Path) -> tuple[float, float, float]:
    """(training seconds, wall seconds, test accuracy) of one `descend train`."""
    cmd = [sys.executable, "-m", "descend", "train", "--data", "cifar10", "--data-root",
           str(root), "--seed", str(seed), "--out", str(out), "--overwrite", "--no-progress",
           "--json", *extra.split()]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    return (sum(r["seconds"] for r in result["history"]), wall, final_test_acc(result))


def run(root: Path, runs: int, extra: str, airbench_path: str | None, out: Path) -> None:
    print(describe(), flush=True)
    gpu = torch.cuda.is_available()
    if airbench_path:
        sys.path.insert(0, airbench_path)
    if not gpu:
        print("no CUDA device: airbench skipped; one tiny descend run on the CPU to prove the "
              "script works (not a measurement)")
        extra, runs = "--time-budget 30s --device cpu", 1
    rows: dict[str, list[tuple[float, float]]] = {"airbench train94": [], "descend": []}
    if gpu:  # warm-ups: CUDA context, cuDNN autotuning, torch.compile caches
        airbench_run(root / "cifar10", warmup=True)
        descend_run(root, extra, 99, out / "warmup")
    for i in range(runs):
        if gpu:
            s, acc = airbench_run(root / "cifar10", warmup=False)
            rows["airbench train94"].append((s, acc))
            print(f"airbench run {i}: {s:.2f} s, test acc {acc:.4f}", flush=True)
        s, wall, acc = descend_run(root, extra, i, out / f"run{i}")
        rows["descend"].append((s, acc))
        print(f"descend run {i}: {s:.2f} s training ({wall:.1f} s wall), test acc {acc:.4f}",
              flush=True)
    print(f"\ndescend flags: {extra}")
    for name, r in rows.items():
        if r:
            accs = [a for _, a in r]
            print(f"{name:<18} mean {statistics.mean(s for s, _ in r):7.2f} s   mean acc "
                  f"{statistics.mean(accs):.4f} (sd {statistics.pstdev(accs):.4f}, {len(r)} runs)")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--data", default="../shared/datasets")
    a.add_argument("--out", default="b3parts")
    b = sub.add_parser("unpack")
    b.add_argument("--parts", default="b3parts")
    b.add_argument("--root", default="/tmp/b3data")
    c = sub.add_parser("run")
    c.add_argument("--root", default="/tmp/b3data")
    c.add_argument("--runs", type=int, default=5)
    c.add_argument("--descend-args", default=DESCEND_ARGS)
    c.add_argument("--airbench", help="a folder holding the airbench package (no network)")
    c.add_argument("--out", default="/tmp/descend-b3-gpu")
    args = p.parse_args()
    if args.cmd == "pack":
        pack(Path(args.data), Path(args.out))
    elif args.cmd == "unpack":
        unpack(Path(args.parts), Path(args.root))
    else:
        run(Path(args.root), args.runs, args.descend_args, args.airbench, Path(args.out))


if __name__ == "__main__":
    main()
