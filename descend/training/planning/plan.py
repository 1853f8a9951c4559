"""The run plan: every setting of a run decided in one place, each with its reason.

A new run goes through `plan_new`, top to bottom: the recipe fills the settings the user left
open, the data sizes the batch and the learning rate and gives the normalization, then the
probes (the only timed parts, each named as one) choose the threads (first: the others run on
them), the fastres widths, the precision and, with ``--time-budget``, the run's length; without
a budget the length is sized to the data. A resumed run goes through `plan_resumed`, which
takes all of it back from ``last.pt``. Either way the result is a frozen `RunPlan`;
`descend.training.trainer.setup` only builds from it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from descend.config import TrainConfig, parse_duration
from descend.data.augment import parse_augment
from descend.data.batching import DEFAULT_BATCH_SIZE, LoaderOptions, fitting_batch_size
from descend.data.loader import make_loader
from descend.data.splits import DataSplits
from descend.data.stats import train_stats
from descend.errors import ConfigError
from descend.models import DEFAULT_MODEL, ModelSpec, Recipe, create_model, recipe_for, with_defaults
from descend.optim import create_optimizer
from descend.runtime.device import cpu_threads
from descend.runtime.precision import amp_candidates, choose_amp, native_bf16
from descend.training.fitting import distributed
from descend.training.fitting.budget import (
    MARGIN,
    OVERHEAD,
    VALIDATION_SHARE,
    BudgetPlan,
    EpochCosts,
    describe_length,
    format_duration,
    steps_that_fit,
    validation_images,
)
from descend.training.fitting.run import epoch_length
from descend.training.planning.probes import (
    PLAN_STEPS,
    PROBE_STEPS,
    PROBE_WARMUP,
    eval_seconds_per_image,
    fit_widths,
    step_seconds,
)
from descend.training.planning.recipe import peak_lr, recipe_changes
from descend.training.planning.remembered import ProbeMemory, Used

Log = Callable[[str], None]

DEFAULT_EPOCHS = 8
# A run sized to its data trains at least this many steps (a small folder's epochs are short:
# 245 photos at batch 16 are 15 steps), within `SIZED_SECONDS` of training. BENCHMARKS.md B11.
MIN_STEPS = 500
SIZED_SECONDS = 120.0


@dataclass(frozen=True)
class RunPlan:
    """Everything a run was decided to be. ``cfg`` has every setting filled: config.json and
    the checkpoints store it, and a resumed run reads it back."""

    cfg: TrainConfig
    spec: ModelSpec  # the model, every argument written out
    mean: list[float]
    std: list[float]
    amp: bool  # bfloat16 autocast
    steps_per_epoch: int
    total_steps: int  # the run's length (the schedule's horizon); a budget revises it
    budget: BudgetPlan | None = None
    threads: int | None = None  # CPU threads, where not torch's own (`probe_threads`)
    # Channels-last memory (`uses_channels_last`: --channels-last and a model with convolutions)
    channels_last: bool = False
    new: bool = True
    reasons: tuple[str, ...] = ()  # one line per choice, for the log
    # The figures of the run's own step and validation the probes used, for the run to check
    # them (`remembered.CheckFigures`); None: nothing to check
    figures: Used | None = None


def plan_new(cfg: TrainConfig, data: DataSplits, device: torch.device,
             from_scratch: bool) -> RunPlan:
    """The plan of a new run: ``cfg`` (the resolved request: the user's settings with those of
    the starting weights) and the data, made complete in two writes, top to bottom:

    1. `settle`: the recipe, the batch, the learning rate and the validation cadence, from the
       data's facts (its name and size);
    2. the probes measure (the threads, then on them the widths, the precision, the steps
       that fit) and
       return what they measured; the plan then records it in the settings once: the model's
       arguments, the epochs and, for the cached head alone, the schedule.
    """
    why: list[str] = []
    fine_tuning = not from_scratch
    # The cached head alone takes no step: its batch and rate are filled but not worth a line.
    # A budget does not buy it fine-tuning (it did not pay on photos, B15): --epochs N does.
    cfg = settle(cfg, data, fine_tuning, why)
    trains = cfg.epochs != 0 or (cfg.time_budget is not None and not cfg.cached_head)
    budget = parse_duration(cfg.time_budget) if cfg.time_budget is not None else None
    mean, std = normalization(cfg, data)
    started = time.monotonic()  # --time-budget counts from the first probe
    memory = ProbeMemory.open(cfg, device, why.append)  # figures of earlier runs (--reprobe)
    first_probe = len(why)

    recipe = recipe_for(cfg.model or DEFAULT_MODEL, fine_tuning)
    spec = ModelSpec(cfg.model or DEFAULT_MODEL, len(data.classes), data.channels,
                     data.image_size, dict(cfg.model_args))
    ladder = (budget is not None and from_scratch and bool(recipe.widths)
              and "widths" not in spec.kwargs)
    # The threads first, every probe after on them: on all the threads of a machine where
    # other programs are busy, the probes took more than a 1m budget (B16).
    narrowest = dataclasses.replace(spec, kwargs={**spec.kwargs, "widths": list(
        recipe.widths[0])}) if ladder else spec
    first = Probe(cfg, with_defaults(narrowest), data, mean, std, device, memory)
    first.now = True  # the threads answer for the load now
    threads = first.threads = probe_threads(cfg, device, first, False, why) if trains else None
    first.now = False
    if ladder:
        assert budget is not None
        with cpu_threads(threads):
            spec = probe_widths(spec, recipe, cfg, budget, started, data, device, why, memory)
    spec = with_defaults(spec)  # written out, so a checkpoint outlives a changed default

    probe = first if first.spec == spec else Probe(cfg, spec, data, mean, std, device, memory)
    probe.threads = threads
    channels_last = uses_channels_last(cfg, probe.model)
    spe = probe.steps_per_epoch
    amp, budget_plan, figures = False, None, None
    record: dict[str, Any] = {"model_args": dict(spec.kwargs)}
    if not trains:  # the cached head alone: no training step to time, nothing to budget
        total = 0
        record["schedule"] = head_only(cfg, why)
    else:
        amp = probe_precision(cfg, device, probe, why)
        probe.now = True  # the run's length answers for the load now
        if budget is not None:
            total, budget_plan = probe_budget(cfg, spe, amp, probe, budget, started, why)
            record["epochs"] = math.ceil(total / spe)
        elif cfg.epochs is None:
            record["epochs"] = size_to_data(spe, amp, probe, why)
            total = record["epochs"] * spe
        else:
            total = cfg.epochs * spe
        figures = memory.used(probe.setup("step", amp), probe.setup("validation", amp), threads)
    memory.save()
    if line := memory.summary(time.monotonic() - started):
        why.insert(first_probe, line)
    return RunPlan(cfg.updated(**record), spec, mean, std, amp, spe, total, budget_plan,
                   threads=threads, channels_last=channels_last, reasons=tuple(why),
                   figures=figures)


def settle(cfg: TrainConfig, data: DataSplits, fine_tuning: bool, why: list[str]
           ) -> TrainConfig:
    """``cfg`` with the settings the data decides: the recipe's values in those left open
    (`recipe.recipe_changes`), the batch size, the learning rate (``--lr auto``: the recipe's
    rate until the range test, which sweeps on what this plan builds, `trainer.auto_lr`,
    replaces it) and how often to validate."""
    recipe = recipe_changes(cfg, data.name, fine_tuning)
    filled = cfg.updated(**recipe)
    trains = filled.epochs != 0 or (filled.time_budget is not None and not filled.cached_head)
    told = why if trains else []
    batch = cfg.batch_size or distributed.divisible_batch(default_batch(len(data.train), told))
    lr = cfg.lr if cfg.lr not in (None, "auto") else peak_lr(filled.model, batch, fine_tuning)
    if cfg.lr is None and (batch != 256 or fine_tuning):
        told.append(f"learning rate {lr:g}: {filled.model}'s one-cycle peak "
                    f"{'for fine-tuning ' if fine_tuning else ''}at batch 256"
                    f"{f', scaled to batch {batch}' if batch != 256 else ''}; --lr sets it")
    budget = parse_duration(cfg.time_budget) if cfg.time_budget is not None else None
    return cfg.updated(data=cfg.data or data.name, **recipe, batch_size=batch, lr=lr,
                       val_every=validation_every(filled, budget, told))


def head_only(cfg: TrainConfig, why: list[str]) -> str:
    """``--cached-head`` with ``--epochs 0``: one pass of the backbone over the images, in
    float32 (`trainer.head_epoch`), and a constant schedule that never steps (returned)."""
    budget = (f"; time budget {cfg.time_budget}: the head alone fits it (fine-tuning did "
              "not pay on photos, BENCHMARKS.md B15)" if cfg.time_budget else "")
    why.append("the head alone on cached features (--epochs 0); --epochs N fine-tunes after it"
               + budget)
    return "constant"


def plan_resumed(cfg: TrainConfig, state: dict[str, Any], data: DataSplits,
                 device: torch.device) -> RunPlan:
    """The plan of a run resumed from ``last.pt`` (``state``): as it began, with the budget
    that is left and the length its last revision gave."""
    spec = ModelSpec.from_dict(state["model"])
    norm = state["normalization"]
    amp = bool(state["precision"]["bf16_autocast"])
    why = [f"precision {'bfloat16 autocast' if amp else 'float32'}, as the run began"]
    probe = Probe(cfg, spec, data, norm["mean"], norm["std"], device)
    spe = probe.steps_per_epoch
    threads = probe.threads = probe_threads(cfg, device, probe, amp, why)  # today's load
    total = (cfg.epochs if cfg.epochs is not None else DEFAULT_EPOCHS) * spe
    budget = None
    kept = state.get("time_budget")
    if cfg.time_budget is not None and kept is not None:
        left = float(kept["left"])
        total = int(state["horizon"]["total"])
        budget = BudgetPlan(parse_duration(cfg.time_budget), time.monotonic() + left,
                            EpochCosts(**kept["costs"]), kept["val_images"])
    return RunPlan(cfg, spec, list(norm["mean"]), list(norm["std"]), amp, spe, total, budget,
                   threads=threads, channels_last=uses_channels_last(cfg, probe.model),
                   new=False, reasons=tuple(why))


def validation_every(cfg: TrainConfig, budget: float | None, why: list[str]) -> int:
    """``--val-every``, else every epoch, or with a budget the last epoch alone (airbench's
    runs, too, evaluate once at the end): early stopping needs every epoch."""
    if cfg.val_every is not None:
        return cfg.val_every
    if budget is None or cfg.early_stop:
        return 1
    why.append("validation at the last epoch only: each pass is time the budget cannot "
               "train; --val-every 1 validates every epoch")
    return 0


def default_batch(n: int, why: list[str]) -> int:
    """The default batch size, or a smaller one that gives a small training set a few steps."""
    size = fitting_batch_size(n)
    if size != DEFAULT_BATCH_SIZE:
        why.append(f"batch size {size} for {n} training images (the default "
                   f"{DEFAULT_BATCH_SIZE} would give {n // DEFAULT_BATCH_SIZE} full batches per "
                   "epoch), learning rate scaled to match unless --lr is given; --batch-size "
                   "sets it")
    return size


def normalization(cfg: TrainConfig, data: DataSplits) -> tuple[list[float], list[float]]:
    """``--mean``/``--std`` when given, else the training split's per-channel statistics."""
    mean, std = (cfg.mean, cfg.std) if cfg.mean and cfg.std else train_stats(data)
    if len(mean) != data.channels or len(std) != data.channels:
        raise ConfigError(f"mean/std need {data.channels} values (one per channel)")
    return list(mean), list(std)


def uses_channels_last(cfg: TrainConfig, model: nn.Module) -> bool:
    """Channels-last memory where the model has convolutions (and ``--channels-last``)."""
    return cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())


def loader_options(cfg: TrainConfig, mean: list[float], std: list[float],
                   device: torch.device, channels_last: bool,
                   log: Log | None = None) -> LoaderOptions:
    """How the training batches are made; under torchrun, this rank's share."""
    assert cfg.batch_size is not None  # the plan filled it
    return distributed.rank_options(LoaderOptions(
        cfg.batch_size, mean, std, shuffle=True, drop_last=cfg.drop_last,
        augment=parse_augment(cfg.augment), device=device, seed=cfg.seed,
        channels_last=channels_last, strict=cfg.strict,
        on_skip=(lambda s: log(f"skipped {s['path']}: {s['reason']} ({s['detail']})"))
        if log else None))


def eval_options(train: LoaderOptions, cfg: TrainConfig) -> LoaderOptions:
    """Validation and test batches: the training options without shuffling or augmentation."""
    return dataclasses.replace(train, batch_size=cfg.eval_batch_size, shuffle=False,
                               drop_last=False, augment=None)


class Probe:
    """The run's own model (fresh weights), loaders and threads, for timing before the run: what
    the probes measure is what the run will do. Made lazily: a plan without probes makes none;
    a step timed once (a precision, a thread count) is not timed again, and one an earlier run
    timed on this machine is not timed at all (``memory``: `remembered.ProbeMemory`)."""

    def __init__(self, cfg: TrainConfig, spec: ModelSpec, data: DataSplits, mean: list[float],
                 std: list[float], device: torch.device, memory: ProbeMemory | None = None
                 ) -> None:
        self.cfg, self.spec, self.data, self.device = cfg, spec, data, device
        self.mean, self.std = mean, std
        self.memory = memory
        self.threads: int | None = None  # the run's, once `probe_threads` has chosen
        self.now = False  # figures that answer for the load now (`ProbeMemory.seconds`)
        self.limit: float | None = None  # seconds after which a step's timing stops
        self._model: nn.Module | None = None
        self._steps: dict[tuple[bool, int, int], tuple[float, bool]] = {}  # (s, remembered)

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            model = create_model(self.spec).to(self.device)
            if uses_channels_last(self.cfg, model):
                model = model.to(memory_format=torch.channels_last)
            self._model = model
        return self._model

    def options(self, channels_last: bool | None = None) -> LoaderOptions:
        if channels_last is None:
            channels_last = uses_channels_last(self.cfg, self.model)
        return loader_options(self.cfg, self.mean, self.std, self.device, channels_last)

    @property
    def steps_per_epoch(self) -> int:
        """The steps of an epoch (the memory layout does not change how many)."""
        return epoch_length(len(make_loader(self.data.train, self.options(False))),
                            self.cfg.epoch_steps)

    def step(self, amp: bool, steps: int = PROBE_STEPS, fresh: bool = False) -> float:
        """Seconds of one training step (`probes.step_seconds`), on the run's own batches and
        threads; ``fresh``: timed again, whatever this plan or the memory holds."""
        cfg = self.cfg
        with cpu_threads(self.threads):
            key = (amp, steps, torch.get_num_threads())
            # A remembered figure is asked again once it must answer for the load now.
            if fresh or key not in self._steps or (self.now and self._steps[key][1]):
                lr, decay = cfg.lr, cfg.weight_decay
                assert isinstance(lr, (int, float)) and decay is not None  # the plan filled them
                self._steps[key] = self.figure("step", amp, lambda: step_seconds(
                    self.model, make_loader(self.data.train, self.options()),
                    lambda params: create_optimizer(cfg.optimizer, params, lr, cfg.momentum,
                                                    decay), self.device, amp, steps,
                    self.limit), fresh)
            return self._steps[key][0]

    def validation(self, amp: bool) -> float:
        """Seconds of one epoch's validation pass (`probes.eval_seconds_per_image`), on the
        run's threads: on all of them while other programs were busy, a CIFAR-10 pass the run
        made in 18.4 s was timed at 93.3 s (B16)."""
        batches = make_loader(self.data.val, eval_options(self.options(), self.cfg))
        with cpu_threads(self.threads):
            return self.figure("validation", amp, lambda: eval_seconds_per_image(
                self.model, batches, self.device, amp))[0] * len(self.data.val)

    def figure(self, what: str, amp: bool, measure: Callable[[], float],
               fresh: bool = False) -> tuple[float, bool]:
        """(``measure()``, False), or (the figure an earlier run on this machine measured,
        True): `ProbeMemory.figure`."""
        if self.memory is None:
            return measure(), False
        return self.memory.figure(self.setup(what, amp), measure, now=self.now, fresh=fresh)

    def remembered_on_a_quiet_machine(self, amp: bool) -> bool:
        """Is this step remembered at torch's threads, and no other program busy now
        (`ProbeMemory.busy`: looked at only then)?"""
        return self.memory is not None and self.memory.holds(self.setup("step", amp)) and (
            not self.memory.busy)

    def setup(self, what: str, amp: bool) -> dict[str, Any]:
        """What a figure of this probe depends on besides the machine (`remembered`): a step
        also on the optimizer, the augmentation, the EMA and ``--compile``; a validation pass is
        timed per image, at the evaluation batch size."""
        cfg = self.cfg
        setup = {"probe": what, "model": self.spec.to_dict(), "amp": amp,
                 "channels_last": uses_channels_last(cfg, self.model)}
        if what == "validation":
            return {**setup, "probe": "validation per image", "batch": cfg.eval_batch_size}
        return {**setup, "batch": cfg.batch_size, "optimizer": cfg.optimizer,
                "augment": cfg.augment, "ema": cfg.ema_decay > 0, "compile": cfg.compile}


def probe_widths(spec: ModelSpec, recipe: Recipe, cfg: TrainConfig, budget: float,
                 started: float, data: DataSplits, device: torch.device,
                 why: list[str], memory: ProbeMemory | None = None) -> ModelSpec:
    """Probe: the model's widths, the widest of its recipe's ladder that fits the epochs it
    needs (`Recipe.epochs_needed`) of this data in the budget, in the faster precision
    (`probes.fit_widths`)."""
    assert cfg.batch_size is not None
    widths, notes = fit_widths(spec, recipe, budget, started, cfg.batch_size,
                               max(1, len(data.train) // cfg.batch_size), len(data.val), device,
                               cfg.channels_last, amp_candidates(cfg.amp, device),
                               cfg.val_every or 0, memory)
    widths = distributed.broadcast_object(widths)
    why.append(f"{spec.name} widths {list(widths)}: the widest that fits the epochs it needs "
               f"in the budget (probe, epochs that fit / needed: {', '.join(notes)})")
    return dataclasses.replace(spec, kwargs={**spec.kwargs, "widths": list(widths)})


def probe_precision(cfg: TrainConfig, device: torch.device, probe: Probe,
                    why: list[str]) -> bool:
    """Probe: bfloat16 autocast where the device has it and a few timed steps show it pays
    (`precision.choose_amp`); under torchrun every rank follows rank 0."""
    if cfg.deterministic and device.type == "cpu":
        # Two timings can choose differently: bit-exact reruns need a precision fixed in advance.
        if cfg.amp and native_bf16():
            why.append("precision float32: --deterministic fixes the precision instead of "
                       "timing it")
        return False
    return bool(distributed.broadcast_object(choose_amp(
        cfg.amp, device, probe.step, why.append,
        again=lambda amp: probe.step(amp, fresh=True))))


def probe_threads(cfg: TrainConfig, device: torch.device, probe: Probe, amp: bool,
                  why: list[str]) -> int | None:
    """Probe: on the CPU, torch's threads (one per core) or half of them, whichever trains
    faster now. Another program busy on a core stalls every thread at each of the step's
    synchronisations; fewer threads than cores then wins (a fastres step on 2 cores, one of them
    busy: 1,850 images/s with 2 threads, 4,624 with 1; idle: 7,607 and 4,388; B10). ``--threads``
    and ``--deterministic`` (a thread count fixed in advance) skip it; None elsewhere. A plan
    that remembers the step (`remembered`) times nothing where no other program is busy now.
    The first probe of a plan (`plan_new`), on the narrowest widths where the widths are probed
    next, in float32."""
    if cfg.threads is not None:
        return cfg.threads
    if device.type != "cpu" or cfg.deterministic or torch.get_num_threads() < 2:
        return None
    if distributed.broadcast_object(probe.remembered_on_a_quiet_machine(amp)):
        return None  # the probe's choice when no other program is busy (B10): time nothing
    every = torch.get_num_threads()
    times = {}
    # Half first: all of them is the count a busy machine makes slow (a CIFAR-10 step 366 ms
    # against 104 ms on one thread, B16), so its timing stops once it has taken longer than
    # half's whole timing (or remembered figure) did: it has lost by then.
    began = time.monotonic()
    with cpu_threads(every // 2):
        times[every // 2] = probe.step(amp)
    probe.limit = max(time.monotonic() - began, times[every // 2] * (PROBE_WARMUP + PROBE_STEPS))
    try:
        with cpu_threads(every):
            times[every] = probe.step(amp)
    finally:
        probe.limit = None
    best = distributed.broadcast_object(min(times, key=times.__getitem__))
    if best != every:
        why.append(f"threads {best} of {every}: a step took {times[every] * 1000:.0f} ms with "
                   f"{every} and {times[best] * 1000:.0f} ms with {best} (other programs are "
                   "busy on the cores); --threads sets it")
        return best
    return None


def probe_budget(cfg: TrainConfig, spe: int, amp: bool, probe: Probe, budget: float,
                 started: float, why: list[str]) -> tuple[int, BudgetPlan]:
    """Probe: the steps that fit ``budget`` (`budget.steps_that_fit`), from the run's own step
    and validation timed here, and the budget's plan; the run revises them as it measures
    itself (`budget.TimeBudget`). A budget whose validation pass would take more than
    `budget.VALIDATION_SHARE` of what the probes left validates on a fixed subset instead and
    trains in the rest (`budget.validation_images`), said in one line (`short_budget`)."""
    step, full, images = probe.step(amp, PLAN_STEPS), probe.validation(amp), len(probe.data.val)
    deadline = started + budget
    probed = time.monotonic() - started
    left = budget - probed - MARGIN * budget
    kept = distributed.broadcast_object(validation_images(images, full, left))
    costs = EpochCosts(step, OVERHEAD, full * kept / max(1, images), cfg.val_every or 0)
    fits = distributed.broadcast_object(steps_that_fit(left, costs, spe))
    total = max(1, fits)
    if kept < images or not fits:
        why.append(short_budget(budget, probed, full, images, kept, costs, total, spe))
    else:
        why.append(f"time budget {format_duration(budget)}: a step takes "
                   f"{costs.step * 1000:.0f} ms ({spe} per epoch) and a validation pass "
                   f"{costs.validation:.1f} s (probe), so {total} steps planned: "
                   f"{describe_length(total, spe)}, revised as the run measures itself")
    return total, BudgetPlan(budget, deadline, costs, kept if kept < images else None)


def short_budget(budget: float, probed: float, full: float, images: int, kept: int,
                 costs: EpochCosts, total: int, spe: int) -> str:
    """The one line of a budget too short for its probes and its validation: what they took,
    what the run does with what is left, and the budget that would be enough: one whose pass
    over every image takes at most `VALIDATION_SHARE` of what it leaves, and that leaves at
    least the probes' time again to train."""
    left = budget * (1 - MARGIN) - probed
    if kept < images:
        why = (f"a validation pass of all {images} images would take {full:.1f} s, more than "
               f"{VALIDATION_SHARE:.0%} of the {max(0.0, left):.1f} s left, so the run validates "
               f"on a fixed {kept} of them ({costs.validation:.1f} s)")
    else:
        why = "they left no time to train"
    enough = (probed + max(full / VALIDATION_SHARE, probed + full)) / (1 - MARGIN)
    return (f"time budget {format_duration(budget)} is short: the probes took {probed:.1f} s "
            f"of it and {why}; a step takes {costs.step * 1000:.0f} ms ({spe} per epoch), so "
            f"{total} steps planned: {describe_length(total, spe)}, revised as the run measures "
            f"itself; --time-budget {format_duration(math.ceil(enough / 10) * 10)} or more "
            "would validate on every image and train longer")


def size_to_data(spe: int, amp: bool, probe: Probe, why: list[str]) -> int:
    """No ``--epochs``: `DEFAULT_EPOCHS`, or for a small dataset enough epochs for `MIN_STEPS`
    steps, as many as a probe says fit `SIZED_SECONDS` of training."""
    epochs = DEFAULT_EPOCHS
    if spe * DEFAULT_EPOCHS < MIN_STEPS:
        step = probe.step(amp)
        fits = max(DEFAULT_EPOCHS, math.floor(SIZED_SECONDS / (step * spe)))
        epochs = distributed.broadcast_object(min(math.ceil(MIN_STEPS / spe), fits))
        why.append(f"{epochs} epochs: {spe} steps an epoch is a small dataset, so the run is "
                   f"sized to {epochs * spe} steps (at least {MIN_STEPS}, within "
                   f"{format_duration(SIZED_SECONDS)} of training at {step * 1000:.0f} ms a "
                   "step); --epochs sets it")
    return epochs
