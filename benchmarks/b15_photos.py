"""B15: a folder of photos, from scratch against ImageNet features (issue 25).

Builds the stand-in photo folders (`photo_folder.py`: CIFAR-10 classes as 256-pixel JPEGs, 245
training and 153 validation images), then times whole ``descend train`` commands on them, each
a fresh process, as a user runs it:

- ``seeds``: the default command (no flag but --data) against ``--model fastres`` (from
  scratch), on one folder per seed;
- ``recipes``: on the first folder, the head on cached features alone (the default), the head
  then fine-tuning, the whole network fine-tuned from ImageNet, and --freeze-epochs (the head
  trained by SGD on the live network first, then everything).

Each row is the best validation accuracy the run recorded and the command's wall time.

    python benchmarks/b15_photos.py --data ../shared/datasets --out /tmp/b15
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe  # noqa: E402
from benchmarks.photo_folder import build  # noqa: E402

LITE2 = ["--model", "efficientnet_lite2", "--pretrained"]
RECIPES = {
    "head on cached features (default)": [],
    "head, then 2 epochs fine-tuning": ["--epochs", "2"],
    "head, then 2 epochs, backbone at 0.1x the rate": ["--epochs", "2",
                                                        "--backbone-lr-scale", "0.1"],
    "whole network from a new head, 3 epochs, --lr 0.01, backbone at 0.1x the rate": [
        *LITE2, "--no-cached-head", "--epochs", "3", "--lr", "0.01",
        "--backbone-lr-scale", "0.1"],
    "head, then 2 epochs, mirroring alone (no random crop)": ["--epochs", "2",
                                                              "--augment", "hflip"],
    "whole network fine-tuned, 3 epochs": [*LITE2, "--no-cached-head", "--epochs", "3"],
    "--freeze-epochs 1, then 2 epochs": [*LITE2, "--no-cached-head", "--freeze-epochs", "1",
                                         "--epochs", "3"],
}


def run(folder: Path, out: Path, extra: list[str]) -> dict[str, object]:
    """One ``descend train`` command: its best validation accuracy and wall time."""
    command = [str(Path(sys.executable).parent / "descend"), "train", "--data",
               f"imagefolder:{folder}", "--out", str(out), "--overwrite", "--no-progress",
               *extra]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    with open(out / "metrics.csv") as f:
        accuracies = [float(r["val_acc"]) for r in csv.DictReader(f) if r["val_acc"]]
    first = next((line for line in done.stdout.splitlines() if line.startswith("photos")), "")
    return {"args": " ".join(extra) or "(none)", "val_acc": round(max(accuracies), 4),
            "epochs": [round(a, 4) for a in accuracies],
            "seconds": round(seconds, 1), "note": first}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the shared datasets folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--classes", default="cat,dog")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--skip-recipes", action="store_true")
    p.add_argument("--skip-seeds", action="store_true")
    p.add_argument("--recipe", action="append", default=[],
                   help="run only the recipes whose name contains this (repeatable)")
    args = p.parse_args()
    print(describe(), flush=True)
    folders = []
    for seed in range(args.seeds):
        folder = args.out / f"photos-{seed}"
        if not folder.exists():
            build(args.data, folder, args.classes.split(","), 245, 153, 256, seed)
        folders.append(folder)
    for seed, folder in enumerate([] if args.skip_seeds else folders):
        for name, extra in (("default", []), ("fastres from scratch", ["--model", "fastres"])):
            row = run(folder, args.out / "runs" / f"{seed}-{name.split()[0]}", extra)
            print(json.dumps({"seed": seed, "run": name, **row}), flush=True)
    if args.skip_recipes:
        return
    for name, extra in RECIPES.items():
        if args.recipe and not any(part in name for part in args.recipe):
            continue
        row = run(folders[0], args.out / "runs" / f"recipe-{list(RECIPES).index(name)}", extra)
        print(json.dumps({"recipe": name, **row}), flush=True)


if __name__ == "__main__":
    main()
