"""The training run: config -> data -> model -> epochs -> checkpoints.

`train` resolves the config (a new run or ``--resume``), `setup` builds the `Run` (run folder,
data, model, loaders, optimizer, schedule, callbacks), `fit` is the epoch loop, and the test
split is measured at the end. Everything else a run does (``last.pt`` and ``best.pt``, metrics
and curves, TensorBoard, early stopping, the weight EMA, progress) is a callback
(`descend.training.callbacks`). The random streams of an epoch depend only on (seed, epoch), so
a run resumed from ``last.pt`` ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descend.config import TrainConfig
from descend.data.augment import parse_augment
from descend.data.batching import (
    DEFAULT_BATCH_SIZE,
    LoaderOptions,
    epoch_seed,
    fitting_batch_size,
)
from descend.data.datasets import DataRequest, load_dataset
from descend.data.loader import make_loader
from descend.data.paths import data_root
from descend.data.splits import DataSplits
from descend.data.stats import train_stats
from descend.errors import CheckpointError, ConfigError, DataError
from descend.io import atomic_write_text
from descend.models import ModelSpec, create_model
from descend.optim import create_optimizer
from descend.training.callbacks import Callback, CallbackList, RunLog, default_callbacks
from descend.training.checkpoint import read_checkpoint
from descend.training.device import pick_device, seed_everything, set_deterministic
from descend.training.initialize import describe_start, load_matching, starting_weights
from descend.training.loop import RunningMetrics, loss_and_accuracy, train_one_epoch
from descend.training.monitor import BestMetric
from descend.training.run import Run
from descend.training.run_folder import default_run_dir, prepare_run_dir
from descend.training.schedules import create_schedule

DEFAULT_LR = 0.2  # the peak learning rate at batch 256 (TrainConfig.lr)
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


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None,
          callbacks: list[Callback] | None = None, **overrides: Any) -> TrainResult:
    """Train a classifier; ``resume`` continues the run folder's ``last.pt``.

    ``train(TrainConfig(data="mnist", epochs=3))`` or ``train(data="mnist", epochs=3)``.
    ``callbacks`` run after the default ones (`default_callbacks`).
    """
    cfg, state = resolve_config(cfg, resume, overrides)
    run = setup(cfg, state, callbacks or [])
    fit(run)
    test_acc = test_accuracy(run)
    run.log(f"best {cfg.monitor} {run.best.best} at epoch {run.best.best_epoch}; saved "
            f"{run.run_dir / 'best.pt'}")
    return TrainResult(run.run_dir, run.history, run.best.best_epoch, run.best.best, test_acc,
                       run.data.name, run.data.classes)


def fit(run: Run) -> None:
    """The epoch loop: train, validate, record; callbacks do the rest."""
    cfg, callbacks = run.cfg, run.callbacks

    def after_step(running: RunningMetrics) -> None:
        run.schedule.step_batch()
        run.running = running
        callbacks.on_step_end(run)

    callbacks.on_train_start(run)
    for epoch in range(run.start_epoch, cfg.epochs):
        # Every random stream of the epoch is a function of (seed, epoch): exact resumes.
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        random.seed(epoch_seed(cfg.seed, epoch))
        run.train_batches.set_epoch(epoch)
        run.epoch, run.lr = epoch, run.optimizer.param_groups[0]["lr"]
        callbacks.on_epoch_start(run)
        result = train_one_epoch(run.step_model, run.train_batches, run.optimizer,
                                 label_smoothing=cfg.label_smoothing, device=run.device,
                                 amp=cfg.amp, on_step=after_step)
        run.evaluated_state = None
        callbacks.on_validation_start(run)
        val_loss, val_acc = loss_and_accuracy(run.step_model, run.val_batches, run.device,
                                              cfg.amp)
        callbacks.on_validation_end(run)
        run.row = {"epoch": epoch + 1, "train_loss": result.loss, "train_acc": result.acc,
                   "val_loss": val_loss, "val_acc": val_acc, "lr": run.lr,
                   "seconds": result.seconds, "images_per_sec": result.images / result.seconds}
        run.history.append(run.row)
        run.schedule.step_epoch(run.row[cfg.monitor])
        run.improved = run.best.update(epoch + 1, run.row[cfg.monitor])
        callbacks.on_epoch_end(run)
        if run.stop:
            break
    callbacks.on_train_end(run)


def test_accuracy(run: Run) -> float | None:
    """Accuracy of the model (the best weights, by now) on the test split, if it has its own."""
    data = run.data
    if data.test is None or data.test is data.val:
        return None
    batches = make_loader(data.test, eval_options(run.loader_options, run.cfg))
    _, acc = loss_and_accuracy(run.model, batches, run.device, run.cfg.amp)
    run.log(f"test accuracy of best.pt: {acc:.4f}")
    return acc


def resolve_config(cfg: TrainConfig | None, resume: str | Path | None,
                   overrides: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's config and, for ``resume``, the state of its ``last.pt``."""
    if resume is None:
        cfg = cfg or TrainConfig()
        return (cfg.updated(**overrides) if overrides else cfg).validate(), None
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
    planned, schedule = state["config"]["epochs"], state["config"]["schedule"]
    if overrides.get("epochs", planned) != planned and schedule in ("onecycle", "cosine"):
        raise ConfigError(
            f"the {schedule} schedule of {run_dir} was planned for {planned} epochs and cannot "
            "be stretched; resume without --epochs, or start a new run (a constant, step, "
            "multistep, exponential or plateau run can be extended)"
        )
    cfg = TrainConfig.from_dict({**state["config"], **overrides, "out": str(run_dir)})
    return cfg.validate(), state


def setup(cfg: TrainConfig, state: dict[str, Any] | None,
          extra_callbacks: list[Callback]) -> Run:
    """Everything the epoch loop needs, in the order the data flows; resumed from ``state``."""
    start = None
    if state is None:
        start = starting_weights(cfg)  # it may fill the model, input size and normalization
        cfg = (start.complete(cfg) if start else cfg).updated(model=cfg.model or "cnn")
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
        prepare_run_dir(run_dir, cfg.overwrite)
        cfg = cfg.updated(out=str(run_dir))
    run_dir = Path(cfg.out)  # type: ignore[arg-type]
    log = RunLog(run_dir / "train.log")
    device = pick_device(cfg.device)
    set_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)

    data = load_data(cfg, log, run_dir)
    if state is None:
        batch = cfg.batch_size or batch_size_for(len(data.train), log)
        cfg = cfg.updated(data=cfg.data or data.name, batch_size=batch,
                          lr=cfg.lr if cfg.lr is not None else DEFAULT_LR * batch / 256)
    mean, std = normalization(cfg, data)
    spec = ModelSpec(cfg.model, len(data.classes), data.channels, data.image_size,
                     dict(cfg.model_args))
    model = create_model(spec).to(device)
    new_weights = []
    if start is not None:
        kept, new_weights = load_matching(model, start, data.classes)
        log(describe_start(start, kept, new_weights, model))
    channels_last = cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum,
                                 cfg.weight_decay)
    options = LoaderOptions(cfg.batch_size, mean, std, shuffle=True, drop_last=cfg.drop_last,
                            augment=parse_augment(cfg.augment), device=device, seed=cfg.seed,
                            channels_last=channels_last, strict=cfg.strict,
                            on_skip=lambda s: log(f"skipped {s['path']}: {s['reason']} "
                                                  f"({s['detail']})"))
    train_batches = make_loader(data.train, options)
    log(f"input pipeline: {train_batches.description}")
    meta = {"model": spec.to_dict(), "classes": data.classes, "data": data.name,
            "data_root": str(data_root(cfg.data_root).resolve()),
            "normalization": {"mean": mean, "std": std}, "config": cfg.to_dict(),
            # The decode step (scale the shorter side to `resize`, centre-crop to `size`), so
            # that predict replays exactly what training saw.
            "geometry": {"size": list(data.image_size), "resize": data.resize}}
    run = Run(cfg=cfg, run_dir=run_dir, log=log, device=device, data=data, model=model,
              step_model=torch.compile(model) if cfg.compile else model,
              loader_options=options, train_batches=train_batches,
              val_batches=make_loader(data.val, eval_options(options, cfg)),
              optimizer=optimizer, schedule=create_schedule(optimizer, cfg, len(train_batches)),
              best=BestMetric(cfg.monitor, cfg.min_delta), meta=meta,
              new_weights=[n for n, _ in model.named_parameters() if n in new_weights])
    run.callbacks = CallbackList(default_callbacks(run) + extra_callbacks)
    if state is not None:
        run.load_resume_state(state)
        log(f"resuming {run_dir} after epoch {run.start_epoch} of {cfg.epochs}")
        if run.start_epoch >= cfg.epochs:
            log(f"the run already finished its {cfg.epochs} epochs; raise --epochs to go on")
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    describe(run)
    return run


def eval_options(train: LoaderOptions, cfg: TrainConfig) -> LoaderOptions:
    """Validation and test batches: the training options without shuffling or augmentation."""
    return dataclasses.replace(train, batch_size=cfg.eval_batch_size, shuffle=False,
                               drop_last=False, augment=None)


def batch_size_for(n: int, log: RunLog) -> int:
    """The default batch size, or a smaller one that gives a small training set a few steps."""
    size = fitting_batch_size(n)
    if size != DEFAULT_BATCH_SIZE:
        log(f"batch size {size} for {n} training images (the default {DEFAULT_BATCH_SIZE} would "
            f"give {n // DEFAULT_BATCH_SIZE} full batches per epoch), learning rate scaled to "
            f"match unless --lr is given; --batch-size sets it")
    return size


def load_data(cfg: TrainConfig, log: RunLog, run_dir: Path) -> DataSplits:
    """The dataset the config names (CIFAR-10 by default, else the built-in sample), with its
    notes and skipped files logged and listed in ``skipped.json``."""
    options = DataRequest.options_from(cfg.to_dict())
    if cfg.data is not None:
        data = load_dataset(cfg.data, cfg.data_root, cfg.cache_dir, **options)
    else:
        try:
            data = load_dataset("cifar10", cfg.data_root, cfg.cache_dir, **options)
        except DataError as e:
            log(f"note: no dataset named and CIFAR-10 is not available ({e})")
            log("note: training on the built-in cifar10-sample (3,000 train / 800 test images) "
                "instead; name a dataset with --data to train on real data")
            data = load_dataset("cifar10-sample", cfg.data_root, cfg.cache_dir, **options)
    for note in data.notes:
        log(f"note: {note}")
    if data.skipped:
        log(f"skipped {len(data.skipped)} unusable file(s); list in {run_dir / 'skipped.json'}")
        for s in data.skipped[:10]:
            log(f"  {s['path']}: {s['reason']}")
        atomic_write_text(run_dir / "skipped.json", json.dumps(data.skipped, indent=1))
    return data


def normalization(cfg: TrainConfig, data: DataSplits) -> tuple[list[float], list[float]]:
    """``--mean``/``--std`` when given, else the training split's per-channel statistics."""
    mean, std = (cfg.mean, cfg.std) if cfg.mean and cfg.std else train_stats(data)
    if len(mean) != data.channels or len(std) != data.channels:
        raise ConfigError(f"mean/std need {data.channels} values (one per channel)")
    return list(mean), list(std)


def describe(run: Run) -> None:
    cfg, data = run.cfg, run.data
    run.log(f"data {data.name}: {len(data.train)} train, {len(data.val)} validation "
            f"({data.val_source}), {len(data.classes)} classes, {data.channels}x"
            f"{data.image_size[0]}x{data.image_size[1]}")
    n_params = sum(p.numel() for p in run.model.parameters())
    run.log(f"model {cfg.model} ({n_params / 1e6:.2f}M parameters) on {run.device}; optimizer "
            f"{cfg.optimizer} lr {cfg.lr} ({cfg.schedule}); batch {cfg.batch_size}; augment "
            f"{parse_augment(cfg.augment).spec}; run folder {run.run_dir}")
