"""The training run: config -> data -> model -> epochs -> checkpoints.

`train` reads the request (a new run or ``--resume``, `descend.training.resume`) and locks its
folder (`descend.training.run_folder`); `setup` loads the data and plans the run (every setting
decided in `descend.training.plan`), `build` makes the `Run` from the plan (model, loaders,
optimizer, schedule, callbacks), `fit` is the epoch loop, and the test split is measured at the
end. Everything else a run does (``last.pt`` and ``best.pt``, metrics
and curves, TensorBoard, early stopping, the weight EMA, progress) is a callback
(`descend.training.callbacks`). The random streams of an epoch depend only on (seed, epoch), so
a run resumed from ``last.pt`` ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from descend.config import TrainConfig
from descend.data.augment import parse_augment
from descend.data.batching import Normalize, epoch_seed
from descend.data.datasets import load_dataset
from descend.data.loader import make_loader
from descend.data.paths import data_root, image_folder
from descend.data.splits import DataSplits
from descend.errors import DataError, DescendError
from descend.models import ModelSpec, create_model
from descend.optim import create_optimizer
from descend.training import distributed
from descend.training.callbacks import (
    Callback,
    CallbackList,
    RunLog,
    TimeBudget,
    default_callbacks,
)
from descend.training.device import (
    cpu_threads,
    pick_device,
    seed_everything,
    set_deterministic,
)
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
from descend.training.photos import photo_default
from descend.training.plan import (
    RunPlan,
    eval_options,
    loader_options,
    plan_new,
    plan_resumed,
    uses_channels_last,
)
from descend.training.resume import check_same_data, data_fingerprint, read_request
from descend.training.run import Epoch, Run
from descend.training.run_folder import RunFolder, default_run_dir
from descend.training.schedules import Horizon, create_schedule


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_metric: float | None
    test_acc: float | None
    data_name: str
    classes: list[str] = field(default_factory=list)
    budget: dict[str, Any] | None = None  # --time-budget: planned against spent (`budget_report`)


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None,
          callbacks: list[Callback] | None = None, allow_added_data: bool = False,
          splits: DataSplits | None = None, **overrides: Any) -> TrainResult:
    """Train a classifier; ``resume`` continues a run folder (or its ``last.pt``).

    ``train(TrainConfig(data="mnist", epochs=3))`` or ``train(data="mnist", epochs=3)``.
    ``callbacks`` run after the default ones (`default_callbacks`). ``allow_added_data``: a
    resumed run may go on with files added to its image folder since it began. ``splits``:
    the data already in hand (e.g. the folds of ``descend audit``) instead of the dataset the
    config names; a resumed run needs the same ones passed again.
    """
    cfg, state, restart = read_request(cfg, resume, overrides)
    start = None
    notes: list[str] = []
    if state is None and splits is None:  # a folder of photos starts from ImageNet
        cfg, note = photo_default(cfg)
        notes += [note] if note else []
    if state is None:  # the weights to start from may fill the model, size and normalization
        start = starting_weights(cfg)
        cfg = start.complete(cfg) if start else cfg
    # A process group under torchrun (nothing in one process); torch's threads given back at the
    # end (the plan may choose fewer).
    with distributed.process_group(cfg.device), cpu_threads(None):
        folder = distributed.open_run_folder(Path(cfg.out) if cfg.out else default_run_dir(cfg),
                                             new=state is None, overwrite=cfg.overwrite or restart)
        try:
            try:
                run = setup(cfg.updated(out=str(folder.path)), state, folder, start,
                            callbacks or [], allow_added_data, splits, notes)
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
                       run.data.name, run.data.classes, budget_report(run))


def fit(run: Run) -> None:
    """The epoch loop: train, validate, record; callbacks do the rest. Each epoch's state is an
    `Epoch` of its own (``run.epoch``), made here."""
    cfg, callbacks = run.cfg, run.callbacks

    def after_step(running: RunningMetrics) -> None:
        run.schedule.step_batch()  # and one step along run.horizon
        run.epoch.running = running
        callbacks.on_step_end(run)

    run.epoch = Epoch(run.start_epoch, run.optimizer.param_groups[0]["lr"])
    callbacks.on_train_start(run)
    index = run.start_epoch
    if cfg.cached_head and index == 0:  # epoch 1: the new head on cached features
        head_epoch(run)
        if run.epoch.stop:
            callbacks.on_train_end(run)
            return
        index = 1
    while run.horizon.steps_left:  # the horizon may be revised as the run goes (a budget)
        # Every random stream of the epoch is a function of (seed, epoch): exact resumes (and
        # under torchrun of the rank too, so that ranks draw different dropout masks).
        torch.manual_seed(epoch_seed(cfg.seed, index, run.loader_options.rank))
        random.seed(epoch_seed(cfg.seed, index, run.loader_options.rank))
        run.train_batches.set_epoch(index)
        epoch = run.epoch = Epoch(index, run.optimizer.param_groups[0]["lr"])
        callbacks.on_epoch_start(run)
        result = train_one_epoch(run.step_model, run.epoch_batches(), run.optimizer,
                                 label_smoothing=cfg.label_smoothing or 0.0, device=run.device,
                                 amp=run.amp, on_step=after_step,
                                 frozen_norm=bool(cfg.cached_head))
        val_loss = val_acc = None  # an epoch without validation (--val-every) has none
        validation_start = time.perf_counter()
        if run.validates():
            callbacks.on_validation_start(run)
            val_loss, val_acc = loss_and_accuracy(run.averaged_model() or run.step_model,
                                                  run.val_batches, run.device, run.amp)
            callbacks.on_validation_end(run)
        end_epoch(run, {"epoch": index + 1, "train_loss": result.loss, "train_acc": result.acc,
                        "val_loss": val_loss, "val_acc": val_acc, "lr": epoch.lr,
                        "seconds": result.seconds,
                        "images_per_sec": result.images / result.seconds,
                        "val_seconds": time.perf_counter() - validation_start
                        if val_acc is not None else None})
        if epoch.stop:
            break
        index += 1
    callbacks.on_train_end(run)


def end_epoch(run: Run, row: dict[str, Any], trained: bool = True) -> None:
    """Record the epoch's metrics, step the schedule on them (an epoch that ``trained`` the
    optimizer's parameters), and run the epoch-end callbacks (checkpoints, metrics.csv, early
    stopping...)."""
    run.epoch.row = row
    run.history.append(row)
    metric = row[run.cfg.monitor]
    if trained:
        run.schedule.step_epoch(metric)
    run.epoch.improved = metric is not None and run.best.update(row["epoch"], metric)
    run.callbacks.on_epoch_end(run)


def head_epoch(run: Run) -> None:
    """``--cached-head``: epoch 1 fits the new head on the frozen backbone's features, computed
    once (`descend.training.features`), and is validated on them; its checkpoints are an
    ordinary model's. Fine-tuning epochs, if any, follow it with the batch-norm statistics the
    head was fitted on kept as they are: a small batch's own statistics differ from them, and
    with them the features the head reads (B15: a head at 84.3% fell to 67.3% after one epoch
    that updated them, batch 16)."""
    from descend.training.features import fit_head

    run.epoch = Epoch(0, 0.0)
    # In float32, as predict, eval and serve compute them: bfloat16 features took half the
    # time (11 s against 21 s for 643 photos on an AMX CPU) but a head fitted and measured on
    # them reported validation accuracies up to 3 points off what eval then measured.
    result = fit_head(run.model, make_loader(run.data.train, eval_options(run.loader_options,
                                                                           run.cfg)),
                      run.val_batches, len(run.data.classes), run.device, False, run.cfg.seed)
    run.log(f"head fitted on cached features of {result.images // 2} training images and "
            f"their mirror images in {result.seconds:.1f} s (L2 strength {result.strength:g}, "
            f"{result.cv_acc:.1%} in {result.folds}-fold cross-validation on the training "
            "split)")
    end_epoch(run, {"epoch": 1, "train_loss": result.train_loss, "train_acc": result.train_acc,
                    "val_loss": result.val_loss, "val_acc": result.val_acc, "lr": 0.0,
                    "seconds": result.seconds,
                    "images_per_sec": result.images / max(result.seconds, 1e-9),
                    "val_seconds": None}, trained=False)
    run.start_epoch = 1


def budget_report(run: Run) -> dict[str, Any] | None:
    """--time-budget: the budget, the seconds of it spent (probes, training and validation),
    and the probe's step against the run's own (the median of its epochs' steps)."""
    keeper = next((cb for cb in run.callbacks.callbacks if isinstance(cb, TimeBudget)), None)
    if run.budget is None or keeper is None:
        return None
    steps = sorted(r["seconds"] / max(1, round(r["images_per_sec"] * r["seconds"]
                                               / (run.cfg.batch_size or 1)))
                   for r in run.history[run.start_epoch:]) if run.history else []
    return {"seconds": run.budget.seconds, "spent": keeper.spent,
            "probe_step": run.budget.costs.step,
            "run_step": steps[len(steps) // 2] if steps else None,
            "revisions": list(keeper.revisions)}


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
          allow_added_data: bool = False, given: DataSplits | None = None,
          notes: list[str] | None = None) -> Run:
    """The data, the plan (`descend.training.plan`: a new run's, or a resumed run's from
    ``state``), then the `Run` built from it; ``notes`` are logged first."""
    # A folder this process follows (under torchrun, any rank but 0) gets a silent log.
    log = (RunLog(folder.path / "train.log", hold=bool(folder.replaced)) if folder.owned
           else RunLog(None, echo=False))
    for line in notes or []:
        log(line)
    device = distributed.local_device(pick_device(cfg.device))
    set_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)
    with distributed.local_first():  # under torchrun, one rank per machine downloads first
        data = given if given is not None else load_data(cfg, log, folder)
    fingerprint = data_fingerprint(data)
    if state is None:
        if cfg.lr == "auto":
            cfg = auto_lr(cfg, data, log)
            seed_everything(cfg.seed)  # the model starts as it would with the rate given
        plan = plan_new(cfg, data, device, start is None)
    else:
        if note := check_same_data(state.get("data_fingerprint"), fingerprint, allow_added_data):
            log(note)
        plan = plan_resumed(cfg, state, data, device)
    for line in plan.reasons:
        log(line)
    run = build(plan, data, folder, start, log, device, fingerprint, extra_callbacks)
    if state is not None:
        run.load_resume_state(state)
        log(f"resuming {folder.path} after epoch {run.start_epoch} of {run.planned_epochs}")
        if not run.horizon.steps_left:
            log(f"the run already finished its {run.planned_epochs} epochs; raise --epochs to "
                "go on")
    folder.write_text("config.json", json.dumps(plan.cfg.to_dict(), indent=2))
    describe(run)
    return run


def auto_lr(cfg: TrainConfig, data: DataSplits, log: RunLog) -> TrainConfig:
    """``--lr auto``: ``cfg`` with lr-find's suggestion (`descend.training.lr_find`)."""
    from descend.training.lr_find import lr_find

    finding = lr_find(cfg.updated(lr=None), splits=data, log=log)
    if finding.suggestion is None:
        raise DescendError("--lr auto: the learning-rate sweep diverged before it could "
                           "suggest a rate; give --lr, or run descend lr-find --start lower")
    log(f"--lr auto: training at {finding.suggestion:.3g}, a tenth of the rate at lr-find's "
        "lowest loss (descend lr-find draws the curve)")
    return cfg.updated(lr=finding.suggestion)


def build(plan: RunPlan, data: DataSplits, folder: RunFolder, start: StartingWeights | None,
          log: RunLog, device: torch.device, fingerprint: dict[str, Any],
          extra_callbacks: list[Callback]) -> Run:
    """The `Run` that ``plan`` describes: model, optimizer, loaders, schedule and callbacks.
    Nothing here decides a setting."""
    cfg = plan.cfg
    if plan.threads is not None:  # `train` gives the process its own count back at the end
        torch.set_num_threads(plan.threads)
    model, new_weights, channels_last = build_model(
        plan.spec, data, Normalize(plan.mean, plan.std, device), start, plan.new, cfg, device,
        log)
    # The plan filled both (and `setup` turned --lr auto into lr-find's rate).
    assert isinstance(cfg.lr, (int, float)) and cfg.batch_size is not None
    optimizer = create_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum,
                                 cfg.weight_decay)
    options = loader_options(cfg, plan.mean, plan.std, device, channels_last, log)
    train_batches = make_loader(data.train, options)
    if plan.total_steps:  # the cached head alone reads the images once, unaugmented
        log(f"input pipeline: {train_batches.description}")
    # Under torchrun, DistributedDataParallel (a frozen backbone's weights get no gradient).
    trained = distributed.wrap(model, device, find_unused=cfg.freeze_epochs > 0)
    horizon = Horizon(plan.total_steps)
    run = Run(cfg=cfg, log=log, device=device, data=data, model=model,
              step_model=cast(nn.Module, torch.compile(trained)) if cfg.compile else trained,
              folder=folder,
              loader_options=options, train_batches=train_batches,
              val_batches=make_loader(data.val, eval_options(options, cfg)), amp=plan.amp,
              optimizer=optimizer,
              schedule=create_schedule(optimizer, cfg, plan.steps_per_epoch, horizon),
              best=BestMetric(cfg.monitor, cfg.min_delta),
              meta=checkpoint_meta(cfg, data, plan.spec, plan.mean, plan.std),
              new_weights=new_weights, fingerprint=fingerprint, horizon=horizon,
              budget=plan.budget)
    run.callbacks = CallbackList(distributed.rank_callbacks(default_callbacks(run)
                                                            + extra_callbacks))
    return run


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
    channels_last = uses_channels_last(cfg, model)
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


def load_data(cfg: TrainConfig, log: RunLog, folder: RunFolder) -> DataSplits:
    """The dataset the config names (CIFAR-10 by default, else the built-in sample), with its
    notes and skipped files logged and listed in ``skipped.json``."""
    options = cfg.data_options()
    if cfg.data is not None:
        data = load_dataset(cfg.data, cfg.data_root, cfg.cache_dir, options)
    else:
        try:
            data = load_dataset("cifar10", cfg.data_root, cfg.cache_dir, options)
        except DataError as e:
            log(f"note: no dataset named and CIFAR-10 is not available ({e})")
            log("note: training on the built-in cifar10-sample (3,000 train / 800 test images) "
                "instead; name a dataset with --data to train on real data")
            data = load_dataset("cifar10-sample", cfg.data_root, cfg.cache_dir, options)
    for note in data.notes:
        log(f"note: {note}")
    if (root := image_folder(data.name)) is not None:  # `descend audit` findings left open
        from descend.audit.decisions import training_notice

        if notice := training_notice(root):
            log(notice)
    if data.skipped:
        log(f"skipped {len(data.skipped)} unusable file(s); list in "
            f"{folder.path / 'skipped.json'}")
        for s in data.skipped[:10]:
            log(f"  {s['path']}: {s['reason']}")
        folder.write_text("skipped.json", json.dumps(data.skipped, indent=1))
    return data


def describe(run: Run) -> None:
    cfg, data = run.cfg, run.data
    run.log(f"data {data.name}: {len(data.train)} train, {len(data.val)} validation "
            f"({data.val_source}), {len(data.classes)} classes, {data.channels}x"
            f"{data.image_size[0]}x{data.image_size[1]}")
    n_params = sum(p.numel() for p in run.model.parameters())
    how = (f"optimizer {cfg.optimizer} lr {cfg.lr} ({cfg.schedule}); batch {cfg.batch_size}"
           f"{distributed.describe_batch(cfg.batch_size or 0)}; augment "
           f"{parse_augment(cfg.augment).spec}" if run.horizon.total else
           "the head alone, fitted on cached features")
    run.log(f"model {cfg.model} ({n_params / 1e6:.2f}M parameters) on {run.device}; {how}; run "
            f"folder {run.run_dir}")
