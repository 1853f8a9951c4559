"""The training run in four steps: resolve -> plan -> build -> fit.

`train` resolves the request (flags, file, ``--resume``, the photo default, the starting
weights, the run folder: `descend.training.planning.resolve`) and locks its folder; `setup`
loads the data and plans the run (every setting decided in `descend.training.planning.plan`,
``--lr auto`` by `auto_lr`); `build` makes the `Run` from the plan (model, loaders, optimizer,
schedule, callbacks) and decides nothing; `fit` is the epoch loop, and the test split is
measured at the end. Everything else a run does (``last.pt`` and ``best.pt``, metrics and
curves, TensorBoard, early stopping, the weight EMA, progress, the time budget) is a callback
(`descend.training.fitting.callbacks`). The random streams of an epoch depend only on (seed,
epoch), so a run resumed from ``last.pt`` ends with the same weights as one that was never
interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from descend.config import FIXED_LENGTH, TrainConfig
from descend.data.augment import parse_augment
from descend.data.batching import Normalize, epoch_seed
from descend.data.datasets import load_dataset
from descend.data.loader import make_loader
from descend.data.paths import data_root, image_folder
from descend.data.splits import DataSplits
from descend.errors import DescendError
from descend.models import ModelSpec, create_model
from descend.optim import create_optimizer, discriminative_groups, muon_groups
from descend.runtime.device import (
    cpu_threads,
    pick_device,
    seed_everything,
    set_deterministic,
)
from descend.training.fitting import distributed
from descend.training.fitting.budget import TimeBudget, validation_subset
from descend.training.fitting.callbacks import (
    Callback,
    CallbackList,
    RunLog,
    default_callbacks,
    rank_callbacks,
)
from descend.training.fitting.loop import RunningMetrics, loss_and_accuracy, train_one_epoch
from descend.training.fitting.monitor import BestMetric
from descend.training.fitting.run import Epoch, Run
from descend.training.fitting.schedules import Horizon, create_schedule
from descend.training.keeping.resume import check_same_data, data_fingerprint
from descend.training.keeping.run_folder import RunFolder
from descend.training.planning.initialize import (
    WHITENING_SAMPLE,
    StartingWeights,
    describe_start,
    init_from_data,
    load_matching,
)
from descend.training.planning.lr_sweep import END, START, STEPS, LRFinding, suggest, sweep
from descend.training.planning.plan import (
    RunPlan,
    eval_options,
    loader_options,
    plan_new,
    plan_resumed,
)
from descend.training.planning.remembered import CheckFigures
from descend.training.planning.resolve import Request, resolve

FolderNotice = Callable[[Path], "str | None"]  # an image folder -> a line for the log, or None


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
    plan: RunPlan | None = None  # what the run was planned to be (the model's widths...)


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None,
          callbacks: list[Callback] | None = None, allow_added_data: bool = False,
          splits: DataSplits | None = None, folder_notice: FolderNotice | None = None,
          **overrides: Any) -> TrainResult:
    """Train a classifier; ``resume`` continues a run folder (or its ``last.pt``).

    ``train(TrainConfig(data="mnist", epochs=3))`` or ``train(data="mnist", epochs=3)``.
    ``callbacks`` run after the default ones (`default_callbacks`). ``allow_added_data``: a
    resumed run may go on with files added to its image folder since it began. ``splits``:
    the data already in hand (e.g. the folds of ``descend audit``) instead of the dataset the
    config names; a resumed run needs the same ones passed again. ``folder_notice``: a line
    about an image folder for the log (`descend.train` passes the audit's open findings).

    Four steps: `resolve` the request, then (in `setup`) load the data and plan the run, `build`
    it, and `fit` it.
    """
    request = resolve(cfg, resume, overrides, data_given=splits is not None)
    cfg = request.cfg
    # A process group under torchrun (nothing in one process); torch's threads given back at the
    # end (the plan may choose fewer).
    with distributed.process_group(cfg.device), cpu_threads(None):
        folder = distributed.open_run_folder(request.folder, new=request.new,
                                             overwrite=cfg.overwrite or request.restart)
        try:
            try:
                run = setup(request, folder, callbacks or [], allow_added_data, splits,
                            folder_notice)
            except BaseException:
                folder.abandon()  # a new folder that never got a run is not left behind
                raise
            if request.restart:
                run.log(f"resuming {folder.path} from the start: it was stopped during its "
                        "first epoch")
            fit(run)
            test_acc = test_accuracy(run)
        finally:
            folder.close()
    run.log(f"best {run.cfg.monitor} {run.best.best} at epoch {run.best.best_epoch}; saved "
            f"{run.run_dir / 'best.pt'}")
    return TrainResult(run.run_dir, run.history, run.best.best_epoch, run.best.best, test_acc,
                       run.data.name, run.data.classes, budget_report(run), run.plan)


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
    once (`descend.training.fitting.features`), and is validated on them; its checkpoints are an
    ordinary model's. Fine-tuning epochs, if any, follow it with the batch-norm statistics the
    head was fitted on kept as they are: a small batch's own statistics differ from them, and
    with them the features the head reads (B15: a head at 84.3% fell to 67.3% after one epoch
    that updated them, batch 16)."""
    from descend.training.fitting.features import fit_head

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
    """--time-budget: planned against spent (`TimeBudget.report`); None without a budget."""
    return run.time_budget.report(run) if run.time_budget is not None else None


def test_accuracy(run: Run) -> float | None:
    """Accuracy of the model (the best weights, by now) on the test split, if it has its own."""
    data = run.data
    if data.test is None or data.test is data.val:
        return None
    batches = make_loader(data.test, eval_options(run.loader_options, run.cfg))
    _, acc = loss_and_accuracy(run.model, batches, run.device, run.amp)
    run.log(f"test accuracy of best.pt: {acc:.4f}")
    return acc


def setup(request: Request, folder: RunFolder, extra_callbacks: list[Callback],
          allow_added_data: bool = False, given: DataSplits | None = None,
          folder_notice: FolderNotice | None = None) -> Run:
    """The data, the plan (`descend.training.planning.plan`: a new run's, or a resumed run's
    from its ``last.pt``), then the `Run` built from it; the request's notes are logged
    first."""
    cfg, state, start = request.cfg, request.state, request.start  # cfg.out is the folder
    # A folder this process follows (under torchrun, any rank but 0) gets a silent log.
    log = (RunLog(folder.path / "train.log", hold=bool(folder.replaced)) if folder.owned
           else RunLog(None, echo=False))
    for line in request.notes:
        log(line)
    device = distributed.local_device(pick_device(cfg.device))
    set_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)
    with distributed.local_first():  # under torchrun, one rank per machine downloads first
        data = given if given is not None else load_data(cfg, log, folder, folder_notice)
    fingerprint = data_fingerprint(data)
    if state is None:
        plan = plan_new(cfg, data, device, start is None)
    else:
        if note := check_same_data(state["data_fingerprint"], fingerprint, allow_added_data):
            log(note)
        plan = plan_resumed(cfg, state, data, device)
    for line in plan.reasons:
        log(line)
    if state is None and cfg.lr == "auto":
        plan = auto_lr(plan, data, folder, start, device, fingerprint, log)
    # The run checks the probe figures its plan used against its own steps (`remembered`).
    checks = [CheckFigures(plan.figures)] if plan.figures is not None else []
    run = build(plan, data, folder, start, log, device, fingerprint, checks + extra_callbacks)
    if state is not None:
        run.load_resume_state(state)
        log(f"resuming {folder.path} after epoch {run.start_epoch} of {run.planned_epochs}")
        if not run.horizon.steps_left:
            fixed = run.cfg.schedule in FIXED_LENGTH  # their shape cannot stretch
            log(f"the run already finished its {run.planned_epochs} epochs; "
                + ("start a new run to train longer (its " + str(run.cfg.schedule) +
                   " schedule was planned for these epochs)" if fixed else
                   "raise --epochs to go on"))
    folder.write_text("config.json", json.dumps(plan.cfg.to_dict(), indent=2))
    describe(run)
    return run


def auto_lr(plan: RunPlan, data: DataSplits, folder: RunFolder, start: StartingWeights | None,
            device: torch.device, fingerprint: dict[str, Any], log: RunLog) -> RunPlan:
    """``--lr auto``: ``plan`` at the rate of the learning-rate range test
    (`descend.training.planning.lr_sweep`), swept on the model and batches this plan builds, from
    the weights the run will start from. A budget is not charged for the sweep: it counts from
    the first probe, and the sweep's seconds move its deadline."""
    began = time.monotonic()
    sweep_plan = dataclasses.replace(plan, cfg=plan.cfg.updated(schedule="constant",
                                                                ema_decay=0.0))
    trial = build(sweep_plan, data, folder, start, RunLog(None, echo=False), device,
                  fingerprint, [])
    finding = LRFinding(plan.cfg.optimizer)
    sweep(trial, finding, STEPS, START, END)
    finding.suggestion, finding.steepest = suggest(finding.lrs, finding.smoothed)
    if finding.suggestion is None:
        raise DescendError("--lr auto: the learning-rate sweep diverged before it could "
                           "suggest a rate; give --lr, or run descend lr-find --start lower")
    log(f"--lr auto: training at {finding.suggestion:.3g}, a tenth of the rate at the range "
        f"test's lowest loss ({len(finding.lrs)} steps from {START:g}; descend lr-find draws "
        "the curve)")
    seed_everything(plan.cfg.seed)  # the model starts as it would with the rate given
    budget = plan.budget and dataclasses.replace(
        plan.budget, deadline=plan.budget.deadline + time.monotonic() - began)
    return dataclasses.replace(plan, cfg=plan.cfg.updated(lr=finding.suggestion),
                               budget=budget)


def build(plan: RunPlan, data: DataSplits, folder: RunFolder, start: StartingWeights | None,
          log: RunLog, device: torch.device, fingerprint: dict[str, Any],
          extra_callbacks: list[Callback]) -> Run:
    """The `Run` that ``plan`` describes: model, optimizer, loaders, schedule and callbacks.
    Nothing here decides a setting."""
    cfg = plan.cfg
    if plan.threads is not None:  # `train` gives the process its own count back at the end
        torch.set_num_threads(plan.threads)
    model, new_weights = build_model(plan, data, Normalize(plan.mean, plan.std, device), start,
                                     device, log)
    # The plan filled these (and `setup` turned --lr auto into lr-find's rate).
    assert isinstance(cfg.lr, (int, float)) and cfg.batch_size is not None
    assert cfg.weight_decay is not None
    # The model, not its parameters: an optimizer may split it into groups (Muon's head).
    params: nn.Module | list[dict[str, Any]] = model
    if cfg.backbone_lr_scale != 1 and new_weights:  # discriminative rates: body slower
        params = discriminative_groups(cfg.optimizer, model, new_weights, cfg.lr,
                                       cfg.backbone_lr_scale)
    elif cfg.partner_lr_scale != 1:  # Muon's Nesterov partner at a rate of its own
        params = muon_groups(model, partner_lr=cfg.lr * cfg.partner_lr_scale)
    optimizer = create_optimizer(cfg.optimizer, params, cfg.lr, cfg.momentum, cfg.weight_decay)
    options = loader_options(cfg, plan.mean, plan.std, device, plan.channels_last, log)
    train_batches = make_loader(data.train, options)
    if plan.total_steps:  # the cached head alone reads the images once, unaugmented
        log(f"input pipeline: {train_batches.description}")
    # Under torchrun, DistributedDataParallel (a frozen backbone's weights get no gradient).
    trained = distributed.wrap(model, device, find_unused=cfg.freeze_epochs > 0 or bool(
        getattr(model, "freezes_parameters", False)))
    horizon = Horizon(plan.total_steps)
    val_images = plan.budget.val_images if plan.budget else None  # `Run.validation_images`
    run = Run(cfg=cfg, log=log, device=device, data=data, model=model,
              step_model=cast(nn.Module, torch.compile(trained)) if cfg.compile else trained,
              folder=folder,
              loader_options=options, train_batches=train_batches,
              val_batches=make_loader(validation_subset(data.val, val_images, cfg.seed),
                                      eval_options(options, cfg)), amp=plan.amp,
              optimizer=optimizer,
              schedule=create_schedule(optimizer, cfg, plan.steps_per_epoch, horizon),
              best=BestMetric(cfg.monitor, cfg.min_delta),
              meta=checkpoint_meta(cfg, data, plan.spec, plan.mean, plan.std),
              new_weights=new_weights, fingerprint=fingerprint, horizon=horizon,
              budget=plan.budget,
              time_budget=TimeBudget(plan.budget) if plan.budget else None, plan=plan)
    run.callbacks = CallbackList(rank_callbacks(default_callbacks(run)
                                                            + extra_callbacks))
    return run


def build_model(plan: RunPlan, data: DataSplits, normalize: Normalize,
                start: StartingWeights | None, device: torch.device, log: RunLog
                ) -> tuple[nn.Module, list[str]]:
    """(the model the plan describes, the names of its parameters that are new): with
    ``start``'s weights where they fit, else (a new run) set from the data where the model asks
    for it (fastres's whitening); in the memory layout the plan chose."""
    spec = plan.spec
    model = create_model(spec).to(device)
    new: list[str] = []
    if start is not None:
        kept, new = load_matching(model, start, data.classes)
        log(describe_start(start, kept, new, model))
    elif plan.new and init_from_data(model, data.train, lambda x: normalize(x.to(device)),
                                     plan.cfg.seed):
        log(f"{spec.name}: layers set from {min(len(data.train), WHITENING_SAMPLE)} training "
            "images (patch whitening)")
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, [n for n, _ in model.named_parameters() if n in new]


def checkpoint_meta(cfg: TrainConfig, data: DataSplits, spec: ModelSpec, mean: list[float],
                    std: list[float]) -> dict[str, Any]:
    """What every checkpoint of the run says about its model, data and config."""
    return {"model": spec.to_dict(), "classes": data.classes, "data": data.name,
            "data_root": str(data_root(cfg.data_root).resolve()),
            "normalization": {"mean": list(mean), "std": list(std)}, "config": cfg.to_dict(),
            # The decode step (scale the shorter side to `resize`, centre-crop to `size`), so
            # that predict replays exactly what training saw.
            "geometry": {"size": list(data.image_size), "resize": data.resize}}


def load_data(cfg: TrainConfig, log: RunLog, folder: RunFolder,
              folder_notice: FolderNotice | None = None) -> DataSplits:
    """The dataset the config names (the request named one: `resolve.with_default_data`),
    with its notes and skipped files logged and listed in ``skipped.json``, and
    ``folder_notice``'s line for an image folder (the caller's: `descend.train` passes the
    audit's)."""
    assert cfg.data is not None, "resolve names the dataset"
    data = load_dataset(cfg.data, cfg.data_root, cfg.cache_dir, cfg.data_options())
    for note in data.notes:
        log(f"note: {note}")
    if folder_notice and (root := image_folder(data.name)) is not None:
        if notice := folder_notice(root):  # e.g. `descend audit` findings left open
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
