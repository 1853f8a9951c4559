"""The training run: config -> data -> model -> epochs -> checkpoints, in one readable function.

Every epoch ends with ``last.pt`` (everything needed to continue), ``best.pt`` when the
monitored metric improved, ``metrics.csv`` and ``curves.png``, all written atomically. The
random streams of an epoch depend only on (seed, epoch), so a run resumed from ``last.pt`` ends
with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from descend.config import TrainConfig
from descend.data.augment import parse_augment
from descend.data.datasets import load_dataset
from descend.data.loader import make_loader
from descend.data.paths import data_root
from descend.data.splits import DataSplits
from descend.data.stats import train_stats
from descend.errors import CheckpointError, ConfigError, DataError
from descend.io import atomic_write_text
from descend.models import ModelSpec, create_model
from descend.optim import ModelEMA, create_optimizer
from descend.training.callbacks import EarlyStopping, MetricsLog, RunLog, better
from descend.training.checkpoint import read_checkpoint, save_checkpoint
from descend.training.device import pick_device, seed_everything, set_deterministic
from descend.training.loop import evaluate, train_one_epoch
from descend.training.schedules import create_schedule

RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "curves.png", "config.json", "train.log",
             "skipped.json")
# Settings a resumed run may change; everything else must stay as the run began.
RESUMABLE_OVERRIDES = {"epochs", "progress", "device", "data_root", "cache_dir", "early_stop",
                       "tensorboard", "eval_batch_size"}


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_metric: float | None
    test_acc: float | None
    data_name: str
    classes: list[str] = field(default_factory=list)


def default_run_dir(cfg: TrainConfig) -> Path:
    data = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path((cfg.data or "cifar10").replace(":", "-")).name)
    return Path("runs") / f"{data}-{cfg.model.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(path: Path, overwrite: bool) -> None:
    existing = [n for n in RUN_FILES if (path / n).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{path} already holds a run ({', '.join(existing)}): continue it with "
            f"--resume {path}, choose another --out, or pass --overwrite to replace it"
        )
    for n in existing:
        (path / n).unlink()
    path.mkdir(parents=True, exist_ok=True)


def load_data(cfg: TrainConfig, log: RunLog) -> DataSplits:
    options: dict[str, Any] = dict(image_size=cfg.image_size, val_fraction=cfg.val_fraction,
                                   seed=cfg.seed, strict=cfg.strict, progress=cfg.progress,
                                   download=cfg.download, augment=cfg.augment)
    if cfg.data is not None:
        return load_dataset(cfg.data, cfg.data_root, cfg.cache_dir, **options)
    try:
        return load_dataset("cifar10", cfg.data_root, cfg.cache_dir, **options)
    except DataError as e:
        log(f"note: no dataset named and CIFAR-10 is not available ({e})")
        log("note: training on the built-in cifar10-sample (3,000 train / 800 test images) "
            "instead; name a dataset with --data to train on real data")
        return load_dataset("cifar10-sample", cfg.data_root, cfg.cache_dir, **options)


def _is_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None,
          **overrides: Any) -> TrainResult:
    """Train a classifier; ``resume`` continues the run folder's ``last.pt``.

    ``train(TrainConfig(data="mnist", epochs=3))`` or ``train(data="mnist", epochs=3)``.
    """
    state: dict[str, Any] | None = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "last.pt").is_file():
            raise CheckpointError(
                f"cannot resume {run_dir}: it has no last.pt (is it a run folder made by "
                "`descend train --out`?)"
            )
        state = read_checkpoint(run_dir / "last.pt")
        blocked = sorted(set(overrides) - RESUMABLE_OVERRIDES)
        if blocked:
            raise ConfigError(
                f"--resume continues a run as it was configured; cannot change "
                f"{', '.join(blocked)} (only {', '.join(sorted(RESUMABLE_OVERRIDES))})"
            )
        planned = state["config"]["epochs"]
        if overrides.get("epochs", planned) != planned and state["config"]["schedule"] in (
            "onecycle", "cosine"
        ):
            raise ConfigError(
                f"the {state['config']['schedule']} schedule of {run_dir} was planned for "
                f"{planned} epochs and cannot be stretched; resume without --epochs, or start a "
                "new run (a constant, step, multistep, exponential or plateau run can be extended)"
            )
        cfg = TrainConfig.from_dict({**state["config"], **overrides, "out": str(run_dir)})
    else:
        cfg = (cfg or TrainConfig()).updated(**overrides) if overrides else (cfg or TrainConfig())
    cfg.validate()
    if state is None:
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
        prepare_run_dir(run_dir, cfg.overwrite)
        cfg = cfg.updated(out=str(run_dir))
    log = RunLog(run_dir / "train.log")

    device = pick_device(cfg.device)
    set_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)
    data = load_data(cfg, log)
    if state is None and cfg.data is None:
        cfg = cfg.updated(data=data.name)
    for note in data.notes:
        log(f"note: {note}")
    if data.skipped:
        log(f"skipped {len(data.skipped)} unusable file(s); list in {run_dir / 'skipped.json'}")
        for s in data.skipped[:10]:
            log(f"  {s['path']}: {s['reason']}")
        atomic_write_text(run_dir / "skipped.json", json.dumps(data.skipped, indent=1))

    mean, std = (cfg.mean, cfg.std) if cfg.mean and cfg.std else train_stats(data)
    if len(mean) != data.channels or len(std) != data.channels:
        raise ConfigError(f"mean/std need {data.channels} values (one per channel)")
    spec = ModelSpec(cfg.model, len(data.classes), data.channels, data.image_size,
                     dict(cfg.model_args))
    model = create_model(spec).to(device)
    channels_last = cfg.channels_last and _is_conv(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if cfg.compile else model

    streamed = dict(strict=cfg.strict, on_skip=lambda s: log(f"skipped {s['path']}: "
                                                              f"{s['reason']} ({s['detail']})"))
    train_batches = make_loader(data.train, cfg.batch_size, mean, std, shuffle=True,
                                drop_last=cfg.drop_last, augment=parse_augment(cfg.augment),
                                device=device, seed=cfg.seed, channels_last=channels_last,
                                **streamed)
    val_batches = make_loader(data.val, cfg.eval_batch_size, mean, std, device=device,
                              channels_last=channels_last, **streamed)
    log(f"input pipeline: {train_batches.description}")
    optimizer = create_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum,
                                 cfg.weight_decay)
    schedule = create_schedule(optimizer, cfg, len(train_batches))
    early = EarlyStopping(cfg.monitor, cfg.early_stop, cfg.min_delta)
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    def after_step() -> None:
        schedule.step_batch()
        if ema is not None:
            ema.update(model)
    metrics = MetricsLog(run_dir)
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.scheduler.load_state_dict(state["scheduler"])
        early.load_state_dict(state["early_stopping"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        metrics.rows = list(state["history"])
        start_epoch = int(state["epoch"])
        torch.set_rng_state(state["rng"]["torch"])
        log(f"resuming {run_dir} after epoch {start_epoch} of {cfg.epochs}")
        if start_epoch >= cfg.epochs:
            log(f"the run already finished its {cfg.epochs} epochs; raise --epochs to go on")
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))

    meta = {"model": spec.to_dict(), "classes": data.classes, "data": data.name,
            "data_root": str(data_root(cfg.data_root).resolve()),
            "normalization": {"mean": list(mean), "std": list(std)}, "config": cfg.to_dict()}
    log(f"data {data.name}: {len(data.train)} train, {len(data.val)} validation "
        f"({data.val_source}), {len(data.classes)} classes, {data.channels}x"
        f"{data.image_size[0]}x{data.image_size[1]}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {cfg.model} ({n_params / 1e6:.2f}M parameters) on {device}; optimizer "
        f"{cfg.optimizer} lr {cfg.lr} ({cfg.schedule}); batch {cfg.batch_size}; augment "
        f"{parse_augment(cfg.augment).spec}; run folder {run_dir}")
    writer = _tensorboard(run_dir) if cfg.tensorboard else None

    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        # Every random stream of the epoch is a function of (seed, epoch): exact resumes.
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)
        random.seed(cfg.seed * 1_000_003 + epoch)
        train_batches.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(total=len(train_batches), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress, leave=False, unit="batch")
        with bar:
            result = train_one_epoch(step_model, train_batches, optimizer,
                                     label_smoothing=cfg.label_smoothing, device=device,
                                     amp=cfg.amp, after_step=after_step, progress=bar)
        # With --ema-decay, validation and best.pt see the averaged weights.
        with ema.applied_to(model) if ema is not None else contextlib.nullcontext():
            val_loss, val_acc = evaluate(step_model, val_batches, device, cfg.amp)
            evaluated = {k: v.clone() for k, v in model.state_dict().items()}
        row = {"epoch": epoch + 1, "train_loss": result.loss, "train_acc": result.acc,
               "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "seconds": result.seconds,
               "images_per_sec": result.images / result.seconds}
        monitored = row[cfg.monitor]
        schedule.step_epoch(monitored)
        improved = better(cfg.monitor, monitored, early.best, cfg.min_delta)
        stop = early.update(epoch + 1, monitored)
        metrics.append(row)
        if writer is not None:
            for k, v in row.items():
                writer.add_scalar(k, v, epoch + 1)
        if improved:
            save_checkpoint(run_dir / "best.pt", {**meta, "state_dict": evaluated,
                                                  "epoch": epoch + 1, "metrics": row})
        save_checkpoint(run_dir / "last.pt", {
            **meta, "state_dict": model.state_dict(), "epoch": epoch + 1, "metrics": row,
            "optimizer": optimizer.state_dict(), "scheduler": schedule.scheduler.state_dict(),
            "early_stopping": early.state_dict(), "history": metrics.rows,
            "rng": {"torch": torch.get_rng_state()},
            **({"ema": ema.state_dict()} if ema is not None else {}),
        })
        log(f"epoch {epoch + 1:>3}/{cfg.epochs}  train loss {result.loss:.4f} acc "
            f"{result.acc:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  lr {lr:.4g}  "
            f"{result.seconds:.1f}s  {row['images_per_sec']:.0f} img/s"
            + ("  *" if improved else ""))
        if stop:
            stopped_early = True
            log(f"early stopping: {cfg.monitor} has not improved for {cfg.early_stop} epochs")
            break
    if writer is not None:
        writer.close()

    best_path = run_dir / "best.pt"
    if best_path.is_file():
        best = read_checkpoint(best_path)
        model.load_state_dict(best["state_dict"])  # the best weights, restored
        if stopped_early:
            log(f"restored the best weights (epoch {best['epoch']})")
    test_acc = None
    if data.test is not None and data.test is not data.val:
        test_batches = make_loader(data.test, cfg.eval_batch_size, mean, std, device=device,
                                   channels_last=channels_last, **streamed)
        _, test_acc = evaluate(model, test_batches, device, cfg.amp)
        log(f"test accuracy of best.pt: {test_acc:.4f}")
    log(f"best {cfg.monitor} {early.best} at epoch {early.best_epoch}; saved {best_path}")
    return TrainResult(run_dir, metrics.rows, early.best_epoch, early.best, test_acc, data.name,
                       data.classes)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") \
            from None
    return SummaryWriter(str(run_dir / "tensorboard"))
