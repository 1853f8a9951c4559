"""The training run: config -> data -> model -> epochs -> checkpoints.

`train` plans the run (a new run or ``--resume``, `descend.training.resume`) and locks its
folder (`descend.training.run_folder`), `setup` builds the `Run` (data, model, loaders,
optimizer, schedule, callbacks), `fit` is the epoch loop, and the test split is measured at the
end. Everything else a run does (``last.pt`` and ``best.pt``, metrics
and curves, TensorBoard, early stopping, the weight EMA, progress) is a callback
(`descend.training.callbacks`). The random streams of an epoch depend only on (seed, epoch), so
a run resumed from ``last.pt`` ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descend.config import TrainConfig, parse_duration
from descend.data.augment import parse_augment
from descend.data.batching import (
    DEFAULT_BATCH_SIZE,
    LoaderOptions,
    Normalize,
    epoch_seed,
    fitting_batch_size,
)
from descend.data.datasets import DataRequest, load_dataset
from descend.data.loader import make_loader
from descend.data.paths import data_root
from descend.data.splits import DataSplits
from descend.data.stats import train_stats
from descend.errors import ConfigError, DataError
from descend.models import ModelSpec, create_model, with_defaults
from descend.optim import create_optimizer
from descend.training import distributed
from descend.training.budget import (
    MIN_EPOCHS,
    PLAN_STEPS,
    PROBE_STEPS,
    eval_seconds_per_image,
    fit_widths,
    format_duration,
    plan_epochs,
    step_seconds,
)
from descend.training.callbacks import Callback, CallbackList, RunLog, default_callbacks
from descend.training.device import pick_device, seed_everything, set_deterministic
from descend.training.initialize import (
    WHITENING_SAMPLE,
    StartingWeights,
    describe_start,
    init_from_data,
    load_matching,
    starting_weights,
)
from descend.training.loop import RunningMetrics, loss_and_accuracy, train_one_epoch
from descend.training.monitor import BestMetric
from descend.training.precision import amp_candidates, choose_amp, native_bf16
from descend.training.recipe import DEFAULT_MODEL, peak_lr, with_recipe
from descend.training.resume import check_same_data, data_fingerprint, plan_run
from descend.training.run import Run, epoch_length
from descend.training.run_folder import RunFolder, default_run_dir
from descend.training.schedules import create_schedule


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
          callbacks: list[Callback] | None = None, allow_added_data: bool = False,
          **overrides: Any) -> TrainResult:
    """Train a classifier; ``resume`` continues a run folder (or its ``last.pt``).

    ``train(TrainConfig(data="mnist", epochs=3))`` or ``train(data="mnist", epochs=3)``.
    ``callbacks`` run after the default ones (`default_callbacks`). ``allow_added_data``: a
    resumed run may go on with files added to its image folder since it began.
    """
    cfg, state, restart = plan_run(cfg, resume, overrides)
    start = None
    if state is None:  # the weights to start from may fill the model, size and normalization
        start = starting_weights(cfg)
        cfg = with_recipe(start.complete(cfg) if start else cfg, cfg.data or "cifar10")
    with distributed.process_group(cfg.device):  # under torchrun; nothing in one process
        folder = distributed.open_run_folder(Path(cfg.out) if cfg.out else default_run_dir(cfg),
                                             new=state is None, overwrite=cfg.overwrite or restart)
        try:
            try:
                run = setup(cfg.updated(out=str(folder.path)), state, folder, start,
                            callbacks or [], allow_added_data)
            except BaseException:
                folder.abandon()  # a new folder that never got a run is not left behind
                raise
            if restart:
                run.log(f"resuming {folder.path} from the start: it was stopped during its "
                        "first epoch")
            fit(run)
            test_acc = test_accuracy(run)
        finally:
            folder.close()
    run.log(f"best {run.cfg.monitor} {run.best.best} at epoch {run.best.best_epoch}; saved "
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
        # Every random stream of the epoch is a function of (seed, epoch): exact resumes (and
        # under torchrun of the rank too, so that ranks draw different dropout masks).
        torch.manual_seed(epoch_seed(cfg.seed, epoch, run.loader_options.rank))
        random.seed(epoch_seed(cfg.seed, epoch, run.loader_options.rank))
        run.train_batches.set_epoch(epoch)
        run.epoch, run.lr = epoch, run.optimizer.param_groups[0]["lr"]
        callbacks.on_epoch_start(run)
        batches = (itertools.islice(run.train_batches, cfg.epoch_steps) if cfg.epoch_steps
                   else run.train_batches)
        result = train_one_epoch(run.step_model, batches, run.optimizer,
                                 label_smoothing=cfg.label_smoothing, device=run.device,
                                 amp=run.amp, on_step=after_step)
        run.evaluated_state = None
        callbacks.on_validation_start(run)
        val_loss, val_acc = loss_and_accuracy(run.step_model, run.val_batches, run.device,
                                              run.amp)
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
    _, acc = loss_and_accuracy(run.model, batches, run.device, run.amp)
    run.log(f"test accuracy of best.pt: {acc:.4f}")
    return acc


def setup(cfg: TrainConfig, state: dict[str, Any] | None, folder: RunFolder,
          start: StartingWeights | None, extra_callbacks: list[Callback],
          allow_added_data: bool = False) -> Run:
    """Everything the epoch loop needs, in the order the data flows; resumed from ``state``."""
    # A folder this process follows (under torchrun, any rank but 0) gets a silent log.
    log = (RunLog(folder.path / "train.log", hold=bool(folder.replaced)) if folder.owned
           else RunLog(None, echo=False))
    device = distributed.local_device(pick_device(cfg.device))
    set_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)

    with distributed.local_first():  # under torchrun, one rank per machine downloads first
        data = load_data(cfg, log, folder)
    fingerprint = data_fingerprint(data)
    if state is None:
        batch = cfg.batch_size or distributed.divisible_batch(batch_size_for(len(data.train),
                                                                             log))
        cfg = cfg.updated(data=cfg.data or data.name, batch_size=batch,
                          lr=cfg.lr if cfg.lr is not None else peak_lr(cfg.model, batch))
        mean, std = normalization(cfg, data)
    else:
        if note := check_same_data(state.get("data_fingerprint"), fingerprint, allow_added_data):
            log(note)
        mean, std = state["normalization"]["mean"], state["normalization"]["std"]
    started = time.monotonic()  # --time-budget counts from here
    spec, cfg = model_spec(cfg, data, state is None, start is None, started, device, log)
    model, new_weights, channels_last = build_model(
        spec, data, Normalize(mean, std, device), start, state is None, cfg, device, log)
    optimizer = create_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum,
                                 cfg.weight_decay)
    options = distributed.rank_options(LoaderOptions(  # under torchrun: this rank's share
        cfg.batch_size, mean, std, shuffle=True, drop_last=cfg.drop_last,
        augment=parse_augment(cfg.augment), device=device, seed=cfg.seed,
        channels_last=channels_last, strict=cfg.strict,
        on_skip=lambda s: log(f"skipped {s['path']}: {s['reason']} ({s['detail']})")))
    train_batches = make_loader(data.train, options)
    log(f"input pipeline: {train_batches.description}")
    # Under torchrun, DistributedDataParallel (a frozen backbone's weights get no gradient).
    trained = distributed.wrap(model, device, find_unused=cfg.freeze_epochs > 0)
    val_batches = make_loader(data.val, eval_options(options, cfg))
    resumed_amp = (state or {}).get("precision", {}).get("bf16_autocast")
    cfg, amp, deadline = plan_speed(cfg, state is None, started, model, train_batches,
                                    val_batches, len(data.val), device, log, resumed_amp)
    run = Run(cfg=cfg, log=log, device=device, data=data, model=model,
              step_model=torch.compile(trained) if cfg.compile else trained, folder=folder,
              loader_options=options, train_batches=train_batches,
              val_batches=val_batches, amp=amp, deadline=deadline,
              optimizer=optimizer, schedule=create_schedule(
                  optimizer, cfg, epoch_length(len(train_batches), cfg.epoch_steps)),
              best=BestMetric(cfg.monitor, cfg.min_delta),
              meta=checkpoint_meta(cfg, data, spec, mean, std), new_weights=new_weights,
              fingerprint=fingerprint)
    run.callbacks = CallbackList(distributed.rank_callbacks(default_callbacks(run)
                                                            + extra_callbacks))
    if state is not None:
        run.load_resume_state(state)
        log(f"resuming {folder.path} after epoch {run.start_epoch} of {cfg.epochs}")
        if run.start_epoch >= cfg.epochs:
            log(f"the run already finished its {cfg.epochs} epochs; raise --epochs to go on")
    folder.write_text("config.json", json.dumps(cfg.to_dict(), indent=2))
    describe(run)
    return run


def model_spec(cfg: TrainConfig, data: DataSplits, new_run: bool, from_scratch: bool,
               started: float, device: torch.device,
               log: RunLog) -> tuple[ModelSpec, TrainConfig]:
    """The model to build, and the config that names it. A new run writes out every argument,
    defaults included, so that its checkpoint rebuilds the model after a default changes; with
    ``--time-budget``, fastres from scratch without ``--model-arg widths`` takes the widest size
    that fits enough epochs (`budget.fit_widths`)."""
    spec = ModelSpec(cfg.model or DEFAULT_MODEL, len(data.classes), data.channels,
                     data.image_size, dict(cfg.model_args))
    if not new_run:
        return spec, cfg
    if (from_scratch and cfg.time_budget is not None and spec.name == "fastres"
            and "widths" not in spec.kwargs):
        widths, notes = fit_widths(spec, parse_duration(cfg.time_budget), started,
                                   cfg.batch_size, max(1, len(data.train) // cfg.batch_size),
                                   len(data.val), device, cfg.channels_last,
                                   amp_candidates(cfg.amp, device))
        widths = distributed.broadcast_object(widths)
        log(f"time budget {cfg.time_budget}: fastres widths {list(widths)}, the widest with "
            f"{MIN_EPOCHS} epochs or more in the budget (epochs that fit: {', '.join(notes)})")
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, "widths": list(widths)})
    spec = with_defaults(spec)
    return spec, cfg.updated(model_args=dict(spec.kwargs))


def plan_speed(cfg: TrainConfig, new: bool, started: float, model: nn.Module,
               train_batches: Any, val_batches: Any, val_images: int, device: torch.device,
               log: RunLog, resumed_amp: bool | None = None
               ) -> tuple[TrainConfig, bool, float | None]:
    """(config, bfloat16 autocast on?, budget deadline): the precision that is fastest here
    (`precision.choose_amp`; a resumed run keeps ``resumed_amp``, the one it began with) and,
    with ``--time-budget`` on a new run, the epochs that fit it (`budget.plan_epochs`). Under
    torchrun every rank follows rank 0's measurements."""

    def step(amp: bool, steps: int = PROBE_STEPS) -> float:
        return step_seconds(model, train_batches, lambda params: create_optimizer(
            cfg.optimizer, params, cfg.lr, cfg.momentum, cfg.weight_decay), device, amp, steps)

    if resumed_amp is not None:
        amp = bool(resumed_amp)
        log(f"precision {'bfloat16 autocast' if amp else 'float32'}, as the run began")
    elif cfg.deterministic and device.type == "cpu":
        # Two timings can choose differently: bit-exact reruns need a precision fixed in advance.
        amp = False
        if cfg.amp and native_bf16():
            log("precision float32: --deterministic fixes the precision instead of timing it")
    else:
        amp = distributed.broadcast_object(choose_amp(cfg.amp, device, step, log))
    if cfg.time_budget is None or not new:
        return cfg, amp, None
    budget = parse_duration(cfg.time_budget)
    per_step = step(amp, PLAN_STEPS)
    per_image = eval_seconds_per_image(model, val_batches, device)
    epochs, epoch, steps = distributed.broadcast_object(plan_epochs(
        budget, time.monotonic() - started, per_step, len(train_batches), val_images, per_image))
    planned = (f"{epochs} epoch(s) planned" if steps is None else
               f"less than one epoch fits: {steps} of its {len(train_batches)} steps planned")
    log(f"time budget {format_duration(budget)}: a step takes {per_step * 1000:.0f} ms "
        f"({len(train_batches)} per epoch) and validation {per_image * val_images:.1f} s, so "
        f"an epoch takes about {epoch:.1f} s: {planned}, about "
        f"{format_duration(epochs * epoch)}, the schedule sized to match")
    return cfg.updated(epochs=epochs, epoch_steps=steps), amp, started + budget


def build_model(spec: ModelSpec, data: DataSplits, normalize: Normalize,
                start: StartingWeights | None, new_run: bool, cfg: TrainConfig,
                device: torch.device, log: RunLog) -> tuple[nn.Module, list[str], bool]:
    """(the model ``spec`` describes, the names of its parameters that are new, channels-last?):
    with ``start``'s weights where they fit, else (a new run) set from the data where the model
    asks for it (fastres's whitening); channels-last where it has convolutions."""
    model = create_model(spec).to(device)
    new: list[str] = []
    if start is not None:
        kept, new = load_matching(model, start, data.classes)
        log(describe_start(start, kept, new, model))
    elif new_run and init_from_data(model, data.train, lambda x: normalize(x.to(device)),
                                    cfg.seed):
        log(f"{spec.name}: layers set from {min(len(data.train), WHITENING_SAMPLE)} training "
            "images (patch whitening)")
    channels_last = cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, [n for n, _ in model.named_parameters() if n in new], channels_last


def checkpoint_meta(cfg: TrainConfig, data: DataSplits, spec: ModelSpec, mean: list[float],
                    std: list[float]) -> dict[str, Any]:
    """What every checkpoint of the run says about its model, data and config."""
    return {"model": spec.to_dict(), "classes": data.classes, "data": data.name,
            "data_root": str(data_root(cfg.data_root).resolve()),
            "normalization": {"mean": list(mean), "std": list(std)}, "config": cfg.to_dict(),
            # The decode step (scale the shorter side to `resize`, centre-crop to `size`), so
            # that predict replays exactly what training saw.
            "geometry": {"size": list(data.image_size), "resize": data.resize}}


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


def load_data(cfg: TrainConfig, log: RunLog, folder: RunFolder) -> DataSplits:
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
        log(f"skipped {len(data.skipped)} unusable file(s); list in "
            f"{folder.path / 'skipped.json'}")
        for s in data.skipped[:10]:
            log(f"  {s['path']}: {s['reason']}")
        folder.write_text("skipped.json", json.dumps(data.skipped, indent=1))
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
            f"{cfg.optimizer} lr {cfg.lr} ({cfg.schedule}); batch {cfg.batch_size}"
            f"{distributed.describe_batch(cfg.batch_size)}; augment "
            f"{parse_augment(cfg.augment).spec}; run folder {run.run_dir}")
