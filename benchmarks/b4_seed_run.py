"""B4: the seed's CIFAR-10 run (MyNet, SGD lr 0.01, batch 128, 20 epochs), ours against the
seed's own code, side by side in one run.

    python benchmarks/b4_seed_run.py --data ../shared/datasets [--epochs 20]

1. seed: the seed's code (build_data / MyNet / train / eval) with one change only: the pixels
   come from the CIFAR-10 PNG folders (decoded once up front, untimed) instead of the pickled
   release, then go through the same per-sample PIL image -> ToTensor -> DataLoader path that
   torchvision's CIFAR10 class uses. Test accuracy after every epoch, as the seed prints it.
2. descend, the seed's command: descend train --data cifar10 --model mlp --optimizer sgd
   --lr 0.01 --epochs 20 --batch-size 128 (our other defaults: one-cycle, crop+flip, ...),
   in float32 (--no-amp), and with the default --amp where this CPU has native bfloat16 (it
   then trains under bfloat16 autocast if a few timed steps show that it pays).
3. descend, the seed's exact recipe: the same plus --schedule constant --augment none
   --label-smoothing 0 --weight-decay 0 (no augmentation, constant lr): our pipeline only;
   in float32, and with --amp where this CPU has native bfloat16.
4. descend train with no flags (its defaults).

"to seed acc" is the training time (the epochs' training steps, evaluation left out on both
sides) each run took to first reach the seed's final test accuracy; the seed's own is its
whole training time.
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
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402
from seed_pipeline import ArrayCIFAR  # noqa: E402

from descend.runtime.precision import native_bf16  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_split(root: Path, split: str) -> tuple[np.ndarray, list[int]]:
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for f in sorted((root / "cifar10" / split / name).glob("*.png")):
            images.append(np.asarray(Image.open(f).convert("RGB")))
            labels.append(label)
    return np.stack(images), labels


class MyNet(nn.Module):  # the seed's network, as written there
    def __init__(self, in_features: int = 3072, out_features: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 1024)
        self.bn1 = nn.BatchNorm1d(1024)
        self.fc2 = nn.Linear(1024, 512)
        self.bn2 = nn.BatchNorm1d(512)
        self.fc3 = nn.Linear(512, 256)
        self.bn3 = nn.BatchNorm1d(256)
        self.fc4 = nn.Linear(256, 64)
        self.bn4 = nn.BatchNorm1d(64)
        self.fc5 = nn.Linear(64, out_features)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 32 * 32 * 3)
        x = self.relu(self.bn1(self.fc1(x)))
        x = self.relu(self.bn2(self.fc2(x)))
        x = self.relu(self.bn3(self.fc3(x)))
        x = self.relu(self.bn4(self.fc4(x)))
        return self.fc5(x)


def seed_run(root: Path, epochs: int) -> dict[str, object]:
    train_np, train_y = read_split(root, "train")
    test_np, test_y = read_split(root, "test")
    t = transforms.Compose([transforms.ToTensor()])
    train_loader = DataLoader(ArrayCIFAR(train_np, train_y, t), batch_size=128, shuffle=True)
    eval_loader = DataLoader(ArrayCIFAR(test_np, test_y, t), batch_size=len(test_y), shuffle=True)
    torch.manual_seed(0)
    model = MyNet()
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    accs, epoch_seconds, elapsed = [], [], []
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for x, y in train_loader:
            loss = criterion(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch_seconds.append(time.perf_counter() - t0)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in eval_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        accs.append(correct / len(test_y))
        elapsed.append(sum(epoch_seconds))
        print(f"  seed epoch {epoch + 1}: test acc {accs[-1]:.4f} "
              f"({time.perf_counter() - start:.0f}s)", flush=True)
    return {"wall_s": time.perf_counter() - start, "train_s": sum(epoch_seconds),
            "median_epoch_s": statistics.median(epoch_seconds),
            "last_acc": accs[-1], "best_acc": max(accs), "accs": accs, "elapsed": elapsed}


def descend_run(args: list[str], out: Path) -> dict[str, object]:
    cmd = [sys.executable, "-m", "descend", "train", *args, "--out", str(out), "--overwrite",
           "--no-progress", "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr)
    result = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    hist = result["history"]
    elapsed = [sum(r["seconds"] for r in hist[:i + 1]) for i in range(len(hist))]
    return {"elapsed": elapsed, "amp": "bfloat16 autocast" in proc.stderr,
            "wall_s": wall, "train_s": sum(r["seconds"] for r in hist),
            "median_epoch_s": statistics.median(r["seconds"] for r in hist),
            "last_acc": hist[-1]["val_acc"], "best_acc": max(r["val_acc"] for r in hist),
            "accs": [r["val_acc"] for r in hist], "command": "descend train " + " ".join(args)}


FLOOR = """
import json, sys, torch
from descend.models.mlp import MLP
from descend.runtime.device import keep_freed_memory
from steps import median_step_seconds
keep_freed_memory()
torch.manual_seed(0)
amp, steps = sys.argv[1] == "1", 390
model = MLP(10, 3, (32, 32))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
seconds = median_step_seconds(model, opt, lambda: (x, y), amp, steps // 3, warmup=10)
print(json.dumps(seconds * steps))
"""


def compute_floor(amp: bool) -> float:
    """Seconds of one epoch's 390 training steps of descend's mlp on one fixed batch: the
    model's arithmetic alone, with no input pipeline (a fresh process, as `descend train`)."""
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(here.parent), str(here), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", FLOOR, "1" if amp else "0"], check=True,
                         capture_output=True, text=True, cwd=here.parent, env=env).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/datasets")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default="/tmp/descend-b4")
    a = p.parse_args()
    print(describe(), flush=True)
    root, out = Path(a.data).resolve(), Path(a.out)
    seed_cmd = ["--data", "cifar10", "--data-root", str(root), "--model", "mlp", "--optimizer",
                "sgd", "--lr", "0.01", "--epochs", str(a.epochs), "--batch-size", "128"]
    exact = seed_cmd + ["--schedule", "constant", "--augment", "none", "--label-smoothing", "0",
                        "--weight-decay", "0"]
    # Warm the decode cache first so no descend run pays the one-time decode.
    descend_run(["--data", "cifar10", "--data-root", str(root), "--epochs", "1", "--model",
                 "mlp"], out / "warm")
    rows = {}
    rows["seed's code"] = seed_run(root, a.epochs)
    rows["descend, seed's command fp32"] = descend_run(seed_cmd + ["--no-amp"], out / "fp32")
    if native_bf16():
        rows["descend, seed's command --amp"] = descend_run(seed_cmd, out / "amp")
    else:
        print("no native bfloat16 on this CPU: the --amp run would be the float32 run; skipped")
    rows["descend, seed's exact recipe"] = descend_run(exact + ["--no-amp"], out / "seed-exact")
    if native_bf16():
        rows["descend, seed's exact --amp"] = descend_run(exact, out / "seed-exact-amp")
    rows["descend train (defaults)"] = descend_run(["--data-root", str(root)], out / "defaults")
    base = rows["seed's code"]["wall_s"]
    goal = rows["seed's code"]["last_acc"]
    for r in rows.values():
        reached = [t for t, acc in zip(r["elapsed"], r["accs"]) if acc >= goal]
        r["to_seed_acc_s"] = reached[0] if reached else float("nan")
    # Median epoch time resists a transient load on a shared machine better than the sum.
    seed_epoch = rows["seed's code"]["median_epoch_s"]
    seed_to = rows["seed's code"]["to_seed_acc_s"]
    print(f"\n{'run':<34}{'wall s':>8}{'train s':>9}{'median epoch s':>16}{'last acc':>10}"
          f"{'best acc':>10}{'speed (wall)':>14}{'speed (epoch)':>15}{'to seed acc s':>15}"
          f"{'speed':>8}")
    for name, r in rows.items():
        print(f"{name:<34}{r['wall_s']:>8.1f}{r['train_s']:>9.1f}{r['median_epoch_s']:>16.2f}"
              f"{r['last_acc']:>10.4f}{r['best_acc']:>10.4f}{base / r['wall_s']:>13.2f}x"
              f"{seed_epoch / r['median_epoch_s']:>14.2f}x{r['to_seed_acc_s']:>15.1f}"
              f"{seed_to / r['to_seed_acc_s']:>7.2f}x")
    floors = {"float32": compute_floor(False)}
    if native_bf16():
        floors["bfloat16 autocast"] = compute_floor(True)
    print("\nthe model's arithmetic alone (mlp, batch 128, one fixed batch, 390 steps): " +
          ", ".join(f"{k} {v:.2f} s an epoch, so at most {seed_epoch / v:.2f}x the seed's epoch"
                    for k, v in floors.items()))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
