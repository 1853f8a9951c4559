"""Small image folders (both layouts) with an audit of them written by hand, as ``descend
audit`` writes it: the review and apply tests need its findings, not the model behind them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ("cat", "dog", "bird")
COLORS = {"cat": (220, 40, 40), "dog": (40, 200, 60), "bird": (40, 60, 220)}


def write_png(file: Path, color: tuple[int, int, int], seed: int, size: int = 24) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color)[None, None] + rng.integers(-40, 40, (size, size, 3)), 0, 255)
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(file)


def make_dataset(root: Path, split_layout: bool, per_class: int = 4) -> None:
    """``per_class`` images a class (``cat_0.png``...), in ``train/`` and two in ``val/``
    with the split layout."""
    for k, name in enumerate(CLASSES):
        for i in range(per_class):
            folder = root / "train" / name if split_layout else root / name
            write_png(folder / f"{name}_{i}.png", COLORS[name], seed=10 * k + i)
        if split_layout:
            for i in range(2):
                write_png(root / "val" / name / f"{name}_v{i}.png", COLORS[name], 100 + 10 * k + i)


def suspect(id: str, path: str, suggested: str | None, kind: str = "label",
            score: float = 0.9) -> dict[str, object]:
    parts = path.split("/")
    split, given = (parts[0], parts[1]) if len(parts) == 3 else ("train", parts[0])
    probabilities = {suggested or "dog": round(score, 2), given: round(1 - score, 2)}
    return {"id": id, "path": path, "split": split, "given": given, "suggested": suggested,
            "kind": kind, "score": score, "probabilities": probabilities}


def write_audit(root: Path, suspects: Iterable[dict[str, object]],
                duplicates: Iterable[dict[str, object]] = (),
                classes: Iterable[str] = CLASSES) -> Path:
    """``root/.descend-audit/audit.json`` with these findings; returns the audit's folder."""
    suspects, duplicates = list(suspects), list(duplicates)
    folder = root / ".descend-audit"
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": 1, "data": f"imagefolder:{root}", "root": str(root),
           "created": "2026-12-05T06:00:00Z", "classes": list(classes),
           "suspects": suspects, "duplicates": duplicates,
           "summary": {"images": sum(1 for p in root.rglob("*.png")),
                       "suspects": {"label": sum(s["kind"] == "label" for s in suspects),
                                    "outlier": sum(s["kind"] == "outlier" for s in suspects)},
                       "duplicates": len(duplicates)}}
    (folder / "audit.json").write_text(json.dumps(doc, indent=1))
    return folder


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the audit's own, by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".descend-audit" not in p.parts}


def folders(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_dir() and ".descend-audit" not in p.parts)


@pytest.fixture
def split_audit(tmp_path: Path) -> Path:
    """The audit folder of a train/val dataset: two wrong labels, an outlier, a wrong label in
    val, and a train image that is also in val."""
    root = tmp_path / "pets"
    make_dataset(root, split_layout=True)
    return write_audit(root, [
        suspect("s1", "train/cat/cat_1.png", "dog", score=0.95),
        suspect("s2", "train/dog/dog_2.png", None, kind="outlier", score=0.9),
        suspect("s3", "val/bird/bird_v0.png", "cat", score=0.8),
        suspect("s4", "train/bird/bird_3.png", "dog", score=0.7),
    ], [
        {"id": "d1", "a": "train/cat/cat_0.png", "b": "val/cat/cat_v1.png",
         "splits": ["train", "val"], "hash_distance": 2, "cosine": 0.98},
    ])


@pytest.fixture
def flat_audit(tmp_path: Path) -> Path:
    """The audit folder of a dataset without splits: ``<class>/*.png``."""
    root = tmp_path / "flat"
    make_dataset(root, split_layout=False)
    return write_audit(root, [
        suspect("s1", "cat/cat_1.png", "dog", score=0.95),
        suspect("s2", "dog/dog_2.png", None, kind="outlier", score=0.9),
        suspect("s3", "bird/bird_3.png", "cat", score=0.8),
    ], [
        {"id": "d1", "a": "cat/cat_0.png", "b": "bird/bird_0.png", "splits": ["train", "train"],
         "hash_distance": 4, "cosine": 0.95},
    ])
