"""``descend audit DATA``: load the dataset, predict every image out of sample, find the
suspects and the leaks, and write the report (`descend.audit.report`).

The report of an image folder goes into the folder itself (``PATH/.descend-audit/``, a folder
the dataset reader passes over), where ``descend train`` and ``descend audit --review`` find
it; other datasets' go to ``--out``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descend.audit.findings import Findings, find_suspects, near_duplicates, phashes
from descend.audit.oos import OutOfSample, Pool, cross_validate, from_features, judged_by_run
from descend.audit.records import AUDIT_FOLDER, Audit
from descend.audit.report import write_report
from descend.config import TrainConfig
from descend.data.datasets import load_dataset
from descend.data.paths import image_folder
from descend.errors import ConfigError
from descend.evaluation.predict import Classifier
from descend.models.efficientnet_lite import BACKBONES
from descend.training.planning.photos import photo_default

TRAINED_FOLDS = 3  # each fold model trains on two thirds of the images
FEATURE_FOLDS = 10  # a head on cached features is seconds: nine tenths of the images each


@dataclass
class AuditResult:
    folder: Path  # where audit.json and suspects.png are
    audit: Audit

    @property
    def report(self) -> dict[str, Any]:
        """The audit as ``audit.json`` has it."""
        return self.audit.to_json()


def audit_folder(data: str, out: str | Path | None = None) -> Path:
    """Where the audit of ``data`` goes: ``out`` if given, else inside an image folder, else
    ``runs/audit-<name>``."""
    if out is not None:
        return Path(out)
    if (root := image_folder(data)) is not None:
        return root / AUDIT_FOLDER
    return Path("runs") / f"audit-{data.replace(':', '-')}"


def run_audit(cfg: TrainConfig, folds: int | None = None, out: str | Path | None = None,
              log: Callable[[str], None] = print,
              from_run: str | Path | None = None) -> AuditResult:
    """Audit the dataset ``cfg.data`` with models trained by ``cfg``, or with the model of
    ``from_run`` (its validation images only are judged), or, for a folder of photos with
    ``descend[pretrained]`` installed (`descend.training.planning.photos`) or an efficientnet_lite
    ``cfg.model``, with heads on ImageNet features; see the module docstring. ``folds``: 3 for
    trained models, `FEATURE_FOLDS` for heads. Returns where the report went and the report."""
    if cfg.data is None:
        raise ConfigError("name the dataset to audit, e.g. descend audit imagefolder:photos")
    start = time.monotonic()
    folder = audit_folder(cfg.data, out)
    classifier = None
    options = cfg.data_options()
    backbone = None
    if from_run is not None:  # decode as the run did
        classifier = Classifier.load(from_run, cfg.device)
        options = options.changed(image_size=classifier.size[0], resize=classifier.resize,
                                  center_crop=None)
    else:
        cfg, note = photo_default(cfg)
        if note:
            log(note)
        if cfg.model in BACKBONES:  # decoded as the backbone was trained
            backbone = cfg.model
            options = options.changed(image_size=None, **BACKBONES[backbone].decode())
    folds = folds or (FEATURE_FOLDS if backbone else TRAINED_FOLDS)
    data = load_dataset(cfg.data or "", cfg.data_root, cfg.cache_dir, options)
    pool = Pool.of(data)
    counts = {name: pool.splits.count(name) for name in dict.fromkeys(pool.splits)}
    how = (f"the validation images judged by {from_run}" if classifier is not None
           else f"{folds}-fold cross-validation"
           + (f" of heads on {backbone}'s ImageNet features" if backbone else ""))
    log(f"audit of {data.name}: {len(pool)} images ("
        + ", ".join(f"{n} {name}" for name, n in counts.items())
        + f"), {len(data.classes)} classes, {how}")
    if classifier is not None:
        oos: OutOfSample = judged_by_run(classifier, data, pool)
    elif backbone is not None:
        oos = from_features(data, pool, backbone, folds, cfg.seed, cfg.device, log)
    else:
        oos = cross_validate(data, pool, cfg, folds, log)
    log(f"out-of-sample accuracy {oos.accuracy:.4f}; finding suspects and duplicates")
    flagged, noise, rule = find_suspects(pool.images.labels, oos.probabilities, oos.covered)
    if not rule.judged and rule.median_evenness is not None:
        hint = ("more photos a class make the heads surer" if backbone else
                "train the folds longer (--time-budget)")
        log(f"strays not judged: the out-of-sample model is unsure of the typical image (median "
            f"evenness {rule.median_evenness:.2f}, above {rule.gate}); {hint}")
    pairs = near_duplicates(phashes(pool.images.images), oos.embeddings, pool.splits)
    findings = Findings(flagged, pairs, noise, rule)
    seconds = time.monotonic() - start
    audit = write_report(folder, data, pool, oos, findings, folds=folds, seconds=seconds,
                         config=cfg, from_run=from_run)
    kinds = [s.kind for s in audit.suspects]
    log(f"{kinds.count('label')} likely wrong labels, {kinds.count('outlier')} "
        f"images that fit no class, {len(audit.duplicates)} near duplicates across splits; "
        f"estimated label noise {noise:.1%}; {seconds:.0f} s")
    return AuditResult(folder, audit)
