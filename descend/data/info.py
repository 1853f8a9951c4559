"""What ``descend data info`` reports about a dataset: counts, sizes, statistics, problems.

Problems are the things that quietly hurt training: files skipped (with the reason of each),
empty class folders, a class far smaller than the others, and exact duplicates, above all
validation or test images that also appear in training (which inflate validation accuracy).
Duplicates are found by hashing the decoded pixels, so they are "identical at the training
resolution"; that costs a hash per image, a fraction of a second for CIFAR-10.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Any

import torch

from descend.data.splits import DataSplits, ImageFiles, ImageTensors
from descend.data.stats import split_stats

# A class with fewer than 1/IMBALANCE_RATIO of the largest class's images is flagged.
IMBALANCE_RATIO = 2.0


def _splits(data: DataSplits) -> dict[str, ImageTensors | ImageFiles]:
    """The distinct splits by name; validation on the test split is listed once, as test."""
    out: dict[str, ImageTensors | ImageFiles] = {"train": data.train}
    if data.val is not data.test:
        out["val"] = data.val
    if data.test is not None:
        out["test"] = data.test
    return out


def _size_summary(sizes: torch.Tensor) -> dict[str, list[int]] | None:
    """min, median, max of width and of height."""
    sizes = sizes[(sizes > 0).all(1)]
    if len(sizes) == 0:
        return None
    w, h = sizes[:, 0].float(), sizes[:, 1].float()
    return {"width": [int(w.min()), int(w.median()), int(w.max())],
            "height": [int(h.min()), int(h.median()), int(h.max())]}


def _duplicates(splits: dict[str, ImageTensors | ImageFiles]) -> dict[str, Any]:
    """Groups of identical decoded images, and how many cross a split boundary."""
    where: dict[bytes, list[tuple[str, int]]] = defaultdict(list)
    for name, split in splits.items():
        if not isinstance(split, ImageTensors):
            return {"checked": False, "why": "the dataset is streamed, not decoded"}
        flat = split.images.reshape(len(split), -1)
        for i in range(len(split)):
            digest = hashlib.blake2b(flat[i].numpy().tobytes(), digest_size=12).digest()
            where[digest].append((name, i))
    groups = [v for v in where.values() if len(v) > 1]
    cross = [g for g in groups if len({s for s, _ in g}) > 1]
    leaked = Counter(s for g in cross for s, _ in g if s != "train"
                     if any(t == "train" for t, _ in g))

    def label(split: str, i: int) -> str:
        paths = splits[split].paths if isinstance(splits[split], ImageTensors) else None
        return paths[i] if paths else f"{split}[{i}]"

    return {
        "checked": True,
        "groups": len(groups),
        "extra_copies": sum(len(g) - 1 for g in groups),
        "across_splits": len(cross),
        "eval_images_also_in_train": dict(leaked),
        "examples": [[label(s, i) for s, i in g[:4]] for g in (cross or groups)[:5]],
    }


def dataset_report(data: DataSplits, duplicates: bool = True) -> dict[str, Any]:
    """Everything `descend data info` prints, as plain data (the ``--json`` output)."""
    splits = _splits(data)
    counts = {name: s.class_counts(len(data.classes)) for name, s in splits.items()}
    mean, std = split_stats(data.train, data.cache)
    sizes = [s.source_sizes for s in splits.values() if s.source_sizes is not None]
    train_counts = counts["train"]
    biggest, smallest = max(train_counts), min(train_counts)
    imbalance = None
    if smallest * IMBALANCE_RATIO <= biggest:
        imbalance = {
            "largest": data.classes[train_counts.index(biggest)], "largest_count": biggest,
            "smallest": data.classes[train_counts.index(smallest)], "smallest_count": smallest,
            "ratio": biggest / max(smallest, 1),
        }
    reasons = Counter(s["reason"] for s in data.skipped)
    decoded = sum(s.nbytes for s in splits.values())
    return {
        "name": data.name,
        "classes": data.classes,
        "splits": {name: len(s) for name, s in splits.items()},
        "validation": data.val_source,
        "counts": counts,
        "input": {"channels": data.channels, "height": data.image_size[0],
                  "width": data.image_size[1]},
        "in_memory": data.in_memory,
        "decoded_bytes": decoded,
        "source_sizes": _size_summary(torch.cat(sizes)) if sizes else None,
        "mean": mean,
        "std": std,
        "problems": {
            "skipped": data.skipped,
            "skipped_by_reason": dict(sorted(reasons.items())),
            "notes": data.notes,
            "imbalance": imbalance,
            "duplicates": _duplicates(splits) if duplicates else {"checked": False,
                                                                  "why": "not asked"},
        },
    }


def format_report(report: dict[str, Any], max_listed: int = 20) -> str:
    """The report as the console text of ``descend data info``."""
    lines = [f"dataset {report['name']}"]
    inp = report["input"]
    where = "decoded in memory" if report["in_memory"] else "streamed from files"
    mb = report["decoded_bytes"] / 1e6
    lines.append(f"  images: {inp['channels']}x{inp['height']}x{inp['width']} uint8, "
                 f"{mb:,.{0 if mb >= 10 else 2}f} MB decoded, {where}")
    src = report["source_sizes"]
    if src:
        (w0, w1, w2), (h0, h1, h2) = src["width"], src["height"]
        lines.append(f"  source files: width {w0}/{w1}/{w2}, height {h0}/{h1}/{h2} "
                     "(min/median/max)")
    lines.append(f"  validation: {report['validation']}")
    fmt = ", ".join
    lines.append(f"  mean ({fmt(f'{m:.4f}' for m in report['mean'])}), "
                 f"std ({fmt(f'{s:.4f}' for s in report['std'])}) of the training split")
    names = list(report["splits"])
    width = max(8, *(len(c) for c in report["classes"]))
    lines.append("")
    lines.append(f"  {'class':<{width}}" + "".join(f"{n:>10}" for n in names))
    for i, c in enumerate(report["classes"]):
        lines.append(f"  {c:<{width}}" + "".join(f"{report['counts'][n][i]:>10,}" for n in names))
    lines.append(f"  {'total':<{width}}" + "".join(f"{report['splits'][n]:>10,}" for n in names))
    lines.append("")
    found = _format_problems(report["problems"], max_listed)
    checked = "unusable files, empty classes, class imbalance, exact duplicates"
    lines.append(f"problems ({checked}):" + ("" if found else " none found"))
    lines += found
    return "\n".join(lines)


def _format_problems(p: dict[str, Any], max_listed: int) -> list[str]:
    """The lines under ``problems``: skipped files, notes, imbalance and duplicates."""
    fmt = ", ".join
    found = []
    if p["skipped"]:
        by = fmt(f"{r} {n}" for r, n in p["skipped_by_reason"].items())
        found.append(f"  skipped {len(p['skipped'])} unusable file(s): {by}")
        for s in p["skipped"][:max_listed]:
            detail = f" ({s['detail']})" if s.get("detail") else ""
            found.append(f"    {s['path']}: {s['reason']}{detail}")
        if len(p["skipped"]) > max_listed:
            found.append(f"    ... and {len(p['skipped']) - max_listed} more (--json lists all)")
    found += [f"  {n}" for n in p["notes"]]
    if p["imbalance"]:
        b = p["imbalance"]
        found.append(f"  class imbalance: {b['largest']!r} has {b['largest_count']:,} training "
                     f"images, {b['smallest']!r} {b['smallest_count']:,} ({b['ratio']:.1f}x)")
    d = p["duplicates"]
    if d.get("checked") and d["groups"]:
        leak = d["eval_images_also_in_train"]
        found.append(f"  exact duplicates: {d['groups']:,} group(s) of identical images "
                     f"({d['extra_copies']:,} extra copies), {d['across_splits']:,} across splits"
                     + (f"; also in train: {fmt(f'{n:,} {s}' for s, n in leak.items())}"
                        if leak else ""))
        for group in d["examples"]:
            found.append(f"    {' = '.join(group)}")
    elif not d.get("checked"):
        found.append(f"  duplicates not checked: {d.get('why')}")
    return found
