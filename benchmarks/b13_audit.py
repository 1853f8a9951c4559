"""B13: `descend audit` on folders with known faults (issue 19).

Builds image folders from CIFAR-10 with faults injected, audits the faulty one, and scores
each finding kind against the truth; then trains the same recipe on the folder as it was,
after ``--apply`` of every suggestion, and on the clean folder, each measured on the clean
test split.

Faults (shares of the clean training images): ``--flip`` of the training labels moved to
another class at random; ``--stray`` more images from no class (half MNIST digits, half
noise) put in classes at random; ``--leak`` more images that are copies of validation
images, slightly resized (32 -> 36 px) or recompressed (JPEG quality 70).

    python benchmarks/b13_audit.py --data ../shared/datasets --out /tmp/b13 \
        --train 10000 --val 2000 --test 2000 --budget 6m --train-budget 3m
    python benchmarks/b13_audit.py --data ../shared/datasets --out /tmp/b13pets \
        --classes cat,dog --train 200 --val 50 --test 1000 --size 96 --image-size 64 --jpeg \
        --test-apart
    python benchmarks/b13_audit.py --data ../shared/datasets --out /tmp/b13p \
        --classes cat,dog --train 200 --val 50 --test 1000 --size 256 --image-size 0 --jpeg \
        --test-apart --train-budget ''

``--test-apart`` writes the test images beside the folders instead of into them, so that the
audit sees only train and val (a folder of about 250 photos stays one) while every training is
still measured on the same clean test images.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe  # noqa: E402


def read_mnist(root: Path, n: int, rng: random.Random) -> list[np.ndarray]:
    raw = (root / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    return [images[i] for i in rng.sample(range(len(images)), n)]


def save(image: Image.Image, path: Path, jpeg: bool, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if size != image.width:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    if jpeg:
        image.convert("RGB").save(path.with_suffix(".jpg"), quality=92)
    else:
        image.save(path.with_suffix(".png"))


def build(args: argparse.Namespace) -> dict[str, object]:
    """The clean folder and the faulty one, and the truth about the faults."""
    rng = random.Random(args.seed)
    source = Path(args.data) / "cifar10"
    classes = args.classes.split(",") if args.classes else sorted(
        p.name for p in (source / "train").iterdir())
    per_class = {c: sorted((source / "train" / c).iterdir()) for c in classes}
    tests = {c: sorted((source / "test" / c).iterdir()) for c in classes}
    for c in classes:
        rng.shuffle(per_class[c])
        rng.shuffle(tests[c])
    n = len(classes)
    take = {"train": args.train // n, "val": args.val // n, "test": args.test // n}
    clean, faulty = Path(args.out) / "clean", Path(args.out) / "faulty"
    apart = Path(args.out) / "test-apart"
    for folder in (clean, faulty, apart):
        shutil.rmtree(folder, ignore_errors=True)
    truth: dict[str, list] = {"flipped": [], "strays": [], "leaks": []}
    val_files: list[tuple[str, Path]] = []
    for c in classes:
        files = per_class[c]
        split_files = {"train": files[:take["train"]],
                       "val": files[take["train"]:take["train"] + take["val"]],
                       "test": tests[c][:take["test"]]}
        for split, chosen in split_files.items():
            for f in chosen:
                image = Image.open(f)
                if split == "test" and args.test_apart:
                    save(image, apart / c / f.stem, args.jpeg, args.size)
                    continue
                save(image, clean / split / c / f.stem, args.jpeg, args.size)
                label = c
                if split == "train" and rng.random() < args.flip:
                    label = rng.choice([o for o in classes if o != c])
                    truth["flipped"].append(f"train/{label}/{f.stem}")
                save(image, faulty / split / label / f.stem, args.jpeg, args.size)
                if split == "val":
                    val_files.append((c, f))
    suffix = ".jpg" if args.jpeg else ".png"
    truth = {k: [p + suffix for p in v] for k, v in truth.items()}
    n_train = take["train"] * n
    digits = read_mnist(Path(args.data), round(args.stray * n_train / 2), rng)
    for i, digit in enumerate(digits):
        c = rng.choice(classes)
        save(Image.fromarray(digit).convert("RGB").resize((32, 32)),
             faulty / "train" / c / f"stray_digit_{i}", args.jpeg, args.size)
        truth["strays"].append(f"train/{c}/stray_digit_{i}{suffix}")
    for i in range(round(args.stray * n_train / 2)):
        c = rng.choice(classes)
        noise = np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        save(Image.fromarray(noise).resize((32, 32), Image.Resampling.BILINEAR),
             faulty / "train" / c / f"stray_noise_{i}", args.jpeg, args.size)
        truth["strays"].append(f"train/{c}/stray_noise_{i}{suffix}")
    for i, (c, f) in enumerate(rng.sample(val_files, round(args.leak * n_train))):
        image = Image.open(f).convert("RGB")
        if i % 2:
            image = image.resize((36, 36), Image.Resampling.BICUBIC)
        else:
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=70)
            image = Image.open(buffer).convert("RGB")
        save(image, faulty / "train" / c / f"leak_{f.stem}", args.jpeg, args.size)
        truth["leaks"].append([f"train/{c}/leak_{f.stem}{suffix}", f"val/{c}/{f.stem}{suffix}"])
    return {"clean": clean, "faulty": faulty, "truth": truth, "classes": classes}


def score(found: set, true: set) -> dict[str, float]:
    hits = len(found & true)
    return {"found": len(found), "true": len(true), "hits": hits,
            "precision": round(hits / len(found), 3) if found else None,
            "recall": round(hits / len(true), 3) if true else None}


def accept_all(audit_dir: Path, report: dict) -> int:
    """Decisions for every suggestion in the training split: relabel the wrong labels, drop
    the strays and the training side of each cross-split duplicate. (The audit also lists
    suspects in val and test; the benchmark leaves them, so that every training is measured on
    the same clean test split.)"""
    from descend.audit.decisions import AuditFolder, record_decision

    audit = AuditFolder.load(audit_dir)
    n = 0
    for s in report["suspects"]:
        if s["split"] != "train":
            continue
        if s["kind"] == "label" and s["suggested"]:
            record_decision(audit, s["path"], "relabel", s["suggested"])
        else:
            record_decision(audit, s["path"], "drop")
        n += 1
    for d in report["duplicates"]:
        side = d["a"] if d["splits"][0] == "train" else d["b"]
        if d["splits"][0] != "train" and d["splits"][1] != "train":
            continue
        record_decision(audit, side, "drop")
        n += 1
    return n


def train_accuracy(folder: Path, args: argparse.Namespace, out: Path) -> float:
    import descend

    result = descend.train(data=f"imagefolder:{folder}", time_budget=args.train_budget or None,
                           image_size=args.image_size or None, progress=False, seed=args.seed,
                           out=str(out), overwrite=True)
    if not args.test_apart:
        assert result.test_acc is not None
        return result.test_acc
    classifier = descend.load(result.run_dir / "best.pt", device="cpu")
    files = [(c.name, f) for c in sorted((Path(args.out) / "test-apart").iterdir())
             for f in sorted(c.iterdir())]
    predictions = classifier.predict([str(f) for _, f in files])
    return sum(p.top[0][0] == c for (c, _), p in zip(files, predictions)) / len(files)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the shared datasets folder")
    p.add_argument("--out", required=True)
    p.add_argument("--classes", help="comma-separated CIFAR-10 classes (default all ten)")
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--val", type=int, default=2000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--size", type=int, default=32, help="side of the files written")
    p.add_argument("--image-size", type=int, default=32, help="side images are trained at (0: "
                   "the default's, e.g. a photo folder's pretrained backbone's)")
    p.add_argument("--jpeg", action="store_true", help="write JPEGs instead of PNGs")
    p.add_argument("--flip", type=float, default=0.10)
    p.add_argument("--stray", type=float, default=0.05)
    p.add_argument("--leak", type=float, default=0.02)
    p.add_argument("--folds", type=int, default=None, help="default: the audit's")
    p.add_argument("--budget", default=None, help="the audit's time budget (all folds)")
    p.add_argument("--train-budget", default="2m", help="each of the three trainings (empty: "
                   "no budget, the default run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--test-apart", action="store_true",
                   help="the test images beside the folders, not in them (see the docstring)")
    args = p.parse_args()
    print(describe(), flush=True)
    from descend.audit import run_audit
    from descend.config import TrainConfig

    built = build(args)
    faulty, truth = built["faulty"], built["truth"]
    assert isinstance(faulty, Path) and isinstance(truth, dict)
    (Path(args.out) / "truth.json").write_text(json.dumps(truth, indent=1))
    print(f"built {faulty}: {len(truth['flipped'])} flipped labels, {len(truth['strays'])} "
          f"strays, {len(truth['leaks'])} leaked copies", flush=True)
    start = time.monotonic()
    cfg = TrainConfig(data=f"imagefolder:{faulty}", image_size=args.image_size or None,
                      time_budget=args.budget, progress=False, seed=args.seed)
    result = run_audit(cfg, folds=args.folds)
    seconds = time.monotonic() - start
    report = result.report
    by_kind = {k: {s["path"] for s in report["suspects"] if s["kind"] == k}
               for k in ("label", "outlier")}
    any_suspect = by_kind["label"] | by_kind["outlier"]
    pairs = {frozenset((d["a"], d["b"])) for d in report["duplicates"]}
    in_train = {k: {p for p in v if p.startswith("train/")} for k, v in by_kind.items()}
    scores = {
        "label": score(by_kind["label"], set(truth["flipped"])),
        "label (train split)": score(in_train["label"], set(truth["flipped"])),
        "outlier": score(by_kind["outlier"], set(truth["strays"])),
        "strays flagged as any suspect": score(any_suspect & set(truth["strays"]),
                                               set(truth["strays"])),
        "duplicates": score(pairs, {frozenset(p) for p in truth["leaks"]}),
    }
    summary = {"images": report["summary"]["images"], "audit_seconds": round(seconds, 1),
               "out_of_sample_accuracy": report["method"]["out_of_sample_accuracy"],
               "label_noise_estimate": report["summary"]["label_noise_estimate"],
               "true_label_noise": round(len(truth["flipped"]) / report["summary"]["images"],
                                         4),
               "scores": scores}
    print(json.dumps(summary, indent=1), flush=True)
    if args.skip_training:
        return
    runs = Path(args.out) / "runs"
    as_was = train_accuracy(faulty, args, runs / "as-was")
    decided = accept_all(result.folder, report)
    from descend.audit.apply import apply_decisions

    applied = apply_decisions(result.folder)
    print(f"applied {decided} decisions: {applied}", flush=True)
    after = train_accuracy(faulty, args, runs / "applied")
    clean_folder = built["clean"]
    assert isinstance(clean_folder, Path)
    clean = train_accuracy(clean_folder, args, runs / "clean")
    print(json.dumps({"test accuracy": {"as it was": round(as_was, 4),
                                        "after --apply": round(after, 4),
                                        "clean": round(clean, 4)}}, indent=1))


if __name__ == "__main__":
    main()
