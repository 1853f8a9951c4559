"""The audit's report: ``audit.json`` (every finding, and the summary a user needs) and
``suspects.png`` (a contact sheet of the top suspects, given and suggested class).

``audit.json`` (format 1, `descend.audit.records.Audit`)::

    {"format": 1, "data": ..., "root": ..., "created": ..., "classes": [...],
     "method": {"folds": 3, "model": ..., "from_run": ..., "judged": ..., "time_budget": ...,
                "out_of_sample_accuracy": ..., "seconds": ...},
     "suspects": [{"id", "path", "index", "split", "given", "suggested", "kind", "score",
                   "probabilities"}, ...],                   # most certain first
     "duplicates": [{"id", "a", "b", "index_a", "index_b", "splits", "hash_distance",
                     "cosine"}, ...],
     "summary": {"images", "suspects": {"label", "outlier"}, "duplicates",
                 "label_noise_estimate", "per_class": {class: {...}},
                 "stray_rule": {"judged", "temperature", "median_evenness", "level", "gate"}}}

Paths are relative to ``root`` with ``/`` separators (None for a dataset without files, where
``index`` is the image's place in the pool: train, then val, then test).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from descend.audit.findings import Findings
from descend.audit.oos import OutOfSample, Pool
from descend.audit.records import AUDIT_FILE, KINDS, Audit, Duplicate, Method, Summary, Suspect
from descend.config import TrainConfig
from descend.data.paths import image_folder
from descend.data.splits import DataSplits
from descend.io import atomic_torch_save, atomic_write_text

SHEET = 40  # suspects on the contact sheet
TOP_PROBABILITIES = 3


def write_report(folder: Path, data: DataSplits, pool: Pool, oos: OutOfSample,
                 findings: Findings, *, folds: int, seconds: float,
                 config: TrainConfig, from_run: str | Path | None = None) -> Audit:
    """Write ``audit.json`` and ``suspects.png`` into ``folder``; returns the audit."""
    folder.mkdir(parents=True, exist_ok=True)
    folder_of_data = image_folder(data.name)
    root = folder_of_data.resolve() if folder_of_data is not None else None
    classes = data.classes
    labels = pool.images.labels.tolist()

    def where(i: int) -> str | None:
        paths = pool.images.paths
        if paths is None or root is None:
            return None
        return Path(os.path.relpath(Path(paths[i]).resolve(), root)).as_posix()

    def top(i: int) -> dict[str, float]:
        values, index = oos.probabilities[i].topk(min(TOP_PROBABILITIES, len(classes)))
        return {classes[j]: round(v, 4) for v, j in zip(values.tolist(), index.tolist())}

    suspects = tuple(
        Suspect(id=f"s{n + 1}", path=where(s.index), index=s.index, split=pool.splits[s.index],
                given=classes[labels[s.index]],
                suggested=classes[s.suggested] if s.suggested is not None else None,
                kind=s.kind, score=round(s.score, 4), probabilities=top(s.index))
        for n, s in enumerate(findings.flagged))
    duplicates = tuple(
        Duplicate(id=f"d{n + 1}", a=where(d.a), b=where(d.b), index_a=d.a, index_b=d.b,
                  splits=(pool.splits[d.a], pool.splits[d.b]), hash_distance=d.hash_distance,
                  cosine=round(d.cosine, 4))
        for n, d in enumerate(findings.pairs))
    audit = Audit(
        data=data.name, root=str(root) if root else None,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), classes=tuple(classes),
        method=Method(folds=None if from_run else folds, model=config.model,
                      from_run=str(from_run) if from_run else None,
                      judged=int(oos.covered.sum()), time_budget=config.time_budget,
                      out_of_sample_accuracy=round(oos.accuracy, 4), seconds=round(seconds, 1)),
        suspects=suspects, duplicates=duplicates,
        summary=summary(classes, labels, findings, len(pool)))
    atomic_write_text(folder / AUDIT_FILE, json.dumps(audit.to_json(), indent=1))
    # The evidence, for a second look without training again.
    atomic_torch_save(folder / "evidence.pt", {
        "probabilities": oos.probabilities, "embeddings": oos.embeddings,
        "labels": pool.images.labels, "splits": pool.splits})
    contact_sheet(folder / "suspects.png", pool, suspects[:SHEET])
    return audit


def summary(classes: list[str], labels: list[int], findings: Findings, images: int) -> Summary:
    """How many of each finding, in all and per given class, and the label noise estimate."""
    per_class = {c: {"images": 0, "label": 0, "outlier": 0, "duplicates": 0} for c in classes}
    kinds = dict.fromkeys(KINDS, 0)
    for y in labels:
        per_class[classes[y]]["images"] += 1
    for s in findings.flagged:
        per_class[classes[labels[s.index]]][s.kind] += 1
        kinds[s.kind] += 1
    for d in findings.pairs:
        per_class[classes[labels[d.a]]]["duplicates"] += 1
    return Summary(images=images, suspects=kinds, duplicates=len(findings.pairs),
                   label_noise_estimate=round(findings.noise_estimate, 4), per_class=per_class,
                   stray_rule=findings.stray_rule)


def contact_sheet(path: Path, pool: Pool, suspects: tuple[Suspect, ...]) -> None:
    """The top suspects in a grid, each titled ``given -> suggested`` (``?`` for a stray)."""
    if not suspects:
        return
    from descend.reports.plots import plot_image_grid

    shown = [(s, s.index) for s in suspects if s.index is not None]
    images = torch.stack([pool.images.images[i] for _, i in shown])
    titles = [f"{s.given} -> {s.suggested or '?'}" for s, _ in shown]
    plot_image_grid(images, titles, path, columns=8)
