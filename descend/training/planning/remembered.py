"""Probe figures remembered per machine: the next run on the same machine plans without probing.

A new run's plan (`descend.training.planning.plan`) times a few training steps before it
starts: each width of the model's ladder (`probes.fit_widths`), the run's own step in each
precision and thread count, and a validation batch. Each of these figures is kept in
``probes.json`` in the cache dir (``--cache-dir``, else ``$DESCEND_CACHE``, else
``~/.cache/descend/cache``: the figures describe the machine, not a dataset or a run folder),
under a key of everything that sets its value:

- the machine: the CPU's model, its logical and physical cores and those this process may use,
  torch's version and CPU kernels (``ATEN_CPU_CAPABILITY=avx2`` is another machine), the device
  (a GPU by its name) and descend's version;
- the step: the model with all its arguments (the widths among them), its classes, channels and
  image size, the batch size, the memory layout, the precision, the thread count and
  ``--deterministic``; for the run's own step also the optimizer, the augmentation, the EMA
  and ``--compile``.

A figure under another key is another figure: a new torch, another width or batch is timed
anew. Seconds are kept, not choices: the plan decides again from them, for this budget.

**The threads and the load now.** The thread probe answers how busy the machine is now, which no
earlier run can know, so its choice is not remembered. A plan that remembers the run's step
looks at the kernel's CPU counters instead (``/proc/stat``, `LOAD_WINDOW` seconds, no training
step): where other programs keep less than `BUSY` of a core busy, it trains with torch's
threads, the probe's choice on a quiet machine (B10), and times nothing; else it times the
threads and the run's step (the steps that fit) as a plan without memory does, and keeps none
of those figures. The widths and the precision are compared with each other, so remembered
figures choose them either way.

**Wrong figures.** The run measures its own steps (`CheckFigures`: the mean step of each epoch
after its first step, the median over epochs) and validation passes. Where one differs from the
figure the plan used by more than `WRONG` either way, and other programs kept less than `BUSY`
of a core busy during the run (the same counters, read at its start and end), the run's figure
replaces it, the model's width figures are forgotten (the next run times them again), and the
run says so in one line; on a busy run the line says the figures stay. A figure timed while
other programs kept `BUSY` of a core busy (the same counters, around the timing) is kept and
marked ``busy``: a busy plan uses it, and the next quiet plan times it again. A run checks only
the figures of what it chose, so without this a figure made slow by a passing load (a bfloat16
step timed at 1.7 s beside float32's 0.16 s, on a Xeon where it takes 0.08 s) would choose
against itself in every later plan.

The file is written atomically, merged with what another run wrote meanwhile, and keeps the
`KEEP` newest figures. A file that cannot be read, or another format's, is ignored with one log
line and written anew; a file that cannot be written is one log line: neither stops a run.
``--reprobe`` times every figure again and remembers the new ones. ``--deterministic`` reads
and writes the memory like any run: a plan made from the same figures is the same plan, which a
new timing need not give.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from descend.data.paths import cache_dir
from descend.errors import DescendError
from descend.io import atomic_write_text
from descend.training.fitting import distributed
from descend.training.fitting.hooks import Callback
from descend.version import __version__

if TYPE_CHECKING:
    from descend.config import TrainConfig
    from descend.training.fitting.run import Run

MEMORY_FILE = "probes.json"
FORMAT = "descend probe figures"
VERSION = 1
KEEP = 500  # figures kept, the newest: a machine's few models, widths and batch sizes
# The run's own figure replaces the plan's beyond this ratio, either way. A probe's step was
# within 10% of the run's own in every B3 run; another program on one of 2 cores costs 2.5x.
WRONG = 1.25
BUSY = 0.5  # cores other programs keep busy from which the load now is timed, not remembered
LOAD_WINDOW = 0.2  # seconds of CPU counters read for it
WIDTH_PROBES = ("width step", "width validation per image")

Note = Callable[[str], None]
Key = dict[str, Any]


def memory_file(cache: str | os.PathLike[str] | None = None) -> Path:
    """Where the figures are kept: ``probes.json`` in the cache dir (`descend.data.paths`)."""
    return cache_dir(cache) / MEMORY_FILE


def this_machine(device: torch.device, cpuinfo: str | Path = "/proc/cpuinfo") -> Key:
    """What makes the machine the one its figures were measured on."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    fields = [line.partition(":") for line in text.splitlines()]
    model = next((v.strip() for k, _, v in fields if k.strip() == "model name"),
                 platform.processor() or platform.machine())
    physical, cores = None, set()
    for k, _, v in fields:  # (physical id, core id) pairs: hyperthreads share a core
        if k.strip() == "physical id":
            physical = v.strip()
        elif k.strip() == "core id":
            cores.add((physical, v.strip()))
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    where = (f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda"
             else device.type)
    return {"cpu": model, "cores": os.cpu_count(), "physical_cores": len(cores) or None,
            "usable_cores": usable, "kernels": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "descend": __version__, "device": where}


@dataclass(frozen=True)
class CpuTime:
    """The CPU seconds all CPUs have been busy (the kernel's counters, less idle and I/O wait)
    and this process's own, at a moment."""

    busy: float
    own: float
    at: float  # time.monotonic()

    def others_since(self, before: CpuTime) -> float:
        """Cores other programs kept busy on average from ``before`` to this moment."""
        return max(0.0, (self.busy - before.busy) - (self.own - before.own)) / max(
            self.at - before.at, 1e-9)


def cpu_time(stat: str | Path = "/proc/stat") -> CpuTime | None:
    """The counters now; None where they cannot be read (not Linux)."""
    try:
        ticks = [int(v) for v in Path(stat).read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return CpuTime(busy, sum(os.times()[:2]), time.monotonic())


def busy_elsewhere(window: float = LOAD_WINDOW, stat: str | Path = "/proc/stat"
                   ) -> float | None:
    """Cores that other programs keep busy now: the CPUs' busy time over ``window`` seconds
    less this process's own, per second; None where the counters cannot be read."""
    before = cpu_time(stat)
    if before is None:
        return None
    time.sleep(window)
    after = cpu_time(stat)
    return after.others_since(before) if after is not None else None


def others_during(measure: Callable[[], float]) -> tuple[float, float | None]:
    """(``measure()``, the cores other programs kept busy meanwhile; None where the counters
    cannot be read)."""
    before = cpu_time()
    seconds = measure()
    after = cpu_time()
    return seconds, (after.others_since(before) if before and after else None)


@dataclass(frozen=True)
class Figure:
    """Seconds measured under a key, when, by what (a ``probe`` or a ``run``), and whether
    other programs were `BUSY` meanwhile."""

    seconds: float
    when: str  # ISO 8601, local time with its offset
    source: str = "probe"
    busy: bool = False

    @staticmethod
    def now(seconds: float, source: str = "probe", busy: bool = False) -> Figure:
        return Figure(seconds, datetime.now().astimezone().isoformat(timespec="seconds"),
                      source, busy)


Figures = dict[str, tuple[Key, Figure]]  # canonical key -> (key, figure)


def canonical(key: Key) -> str:
    """The key as one string: the same settings give the same string (a tuple is a list)."""
    return json.dumps(key, sort_keys=True, default=str)


def read_figures(path: Path, note: Note | None = None) -> Figures:
    """The figures in ``path``; none (and one ``note``) where it cannot be read or holds
    something else."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(document, dict) and document.get("format") == FORMAT):
            raise ValueError("not descend's probe figures")
        if document.get("version") != VERSION:
            raise ValueError(f"version {document.get('version')!r}, this descend reads "
                             f"{VERSION}")
        figures: Figures = {}
        for entry in document["figures"]:
            seconds = float(entry["seconds"])
            if not (math.isfinite(seconds) and seconds > 0) or not isinstance(entry["key"], dict):
                raise ValueError(f"a figure of {seconds!r} seconds")
            figure = Figure(seconds, str(entry["when"]), str(entry.get("source", "probe")),
                            bool(entry.get("busy", False)))
            figures[canonical(entry["key"])] = (entry["key"], figure)
        return figures
    except (OSError, ValueError, KeyError, TypeError) as e:
        if note:
            note(f"note: {path} ignored ({e}): the probes are timed and the file written anew")
        return {}


def write_figures(path: Path, put: Figures, forget: Callable[[Key], bool] = lambda _: False,
                  note: Note | None = None) -> bool:
    """Merge ``put`` into the file as it is now (another run may have written since), less the
    figures ``forget`` names, keep the `KEEP` newest, and write it atomically. A failure is
    one ``note``, not an error: a run does not stop for its memory."""
    figures = {k: v for k, v in read_figures(path).items() if not forget(v[0])}
    figures.update(put)
    newest = sorted(figures.values(), key=lambda kf: kf[1].when, reverse=True)[:KEEP]
    document = {"format": FORMAT, "version": VERSION,
                "about": "seconds timed by descend's probes and runs on this machine (descend/"
                "training/planning/remembered.py); delete the file, or train with --reprobe, "
                "to time them again",
                "figures": [{"key": k, "seconds": f.seconds, "when": f.when, "source": f.source,
                             "busy": f.busy} for k, f in newest]}
    try:
        atomic_write_text(path, json.dumps(document, indent=1) + "\n")
    except (DescendError, OSError) as e:
        if note:
            note(f"note: probe figures not remembered: {e}")
        return False
    return True


@dataclass(frozen=True)
class Used:
    """The figures of the run's own step and validation pass (seconds per image) as its plan
    used them, for the run to check itself against (`CheckFigures`)."""

    path: Path
    step: tuple[Key, float] | None
    validation: tuple[Key, float] | None


@dataclass
class ProbeMemory:
    """The figures of one plan: those it found in ``path`` (unless ``read`` is off:
    ``--reprobe``), those it timed (written back by `save`, where ``write``: under torchrun,
    rank 0 alone), and whether other programs were busy (`busy`)."""

    path: Path
    machine: Key
    read: bool = True
    write: bool = True
    note: Note | None = None
    known: Figures = field(default_factory=dict)
    recalled: Figures = field(default_factory=dict)
    timed: Figures = field(default_factory=dict)
    now_timed: int = 0  # timed for the load now, not kept
    retimed: int = 0  # remembered from a busy machine, timed again on a quiet one
    load: float | None = None  # cores other programs kept busy, once looked at
    looked: bool = False

    @classmethod
    def open(cls, cfg: TrainConfig, device: torch.device, note: Note) -> ProbeMemory:
        """The memory of this machine, for a new run's plan."""
        memory = cls(memory_file(cfg.cache_dir), this_machine(device), read=not cfg.reprobe,
                     write=distributed.world().is_main, note=note)
        if memory.read:
            memory.known = read_figures(memory.path, note)
        return memory

    def key(self, setup: Key) -> Key:
        """``setup``'s key: the machine, the setup, and torch's threads and deterministic mode
        as they are now (the figure is timed under them)."""
        return {**self.machine, **setup, "threads": torch.get_num_threads(),
                "deterministic": torch.are_deterministic_algorithms_enabled()}

    def holds(self, setup: Key) -> bool:
        """Is ``setup``'s figure remembered (and to be read)?"""
        return self.read and canonical(self.key(setup)) in self.known

    @property
    def busy(self) -> bool:
        """Did other programs keep `BUSY` of a core or more busy (looked at once, on the CPU;
        unknown counts as quiet)?"""
        if not self.looked:
            self.looked = True
            if self.machine["device"] == "cpu":
                self.load = busy_elsewhere()
        return self.load is not None and self.load >= BUSY

    def seconds(self, setup: Key, measure: Callable[[], float], now: bool = False) -> float:
        """The figure of ``setup``: remembered, else ``measure()``d and kept."""
        return self.figure(setup, measure, now)[0]

    def figure(self, setup: Key, measure: Callable[[], float], now: bool = False,
               fresh: bool = False) -> tuple[float, bool]:
        """(`seconds`, whether it was remembered). ``now``: the figure answers for the load now
        (the threads, the run's length), so a remembered one serves only while other programs
        are quiet; while they are busy it is timed again and the memory keeps its own. A figure
        timed on a busy machine serves busy plans; a quiet one times it again and keeps that.
        ``fresh``: timed again whatever is remembered (a second look at a figure that decided
        against expectations), and kept unless other programs are busy now."""
        key = self.key(setup)
        name = canonical(key)
        found = self.known.get(name) if self.read else None
        if found is not None and not fresh and not (now and self.busy) and not (
                found[1].busy and not self.busy):
            self.recalled[name] = found
            return found[1].seconds, True
        seconds, load = others_during(measure)
        if found is not None and not found[1].busy and (self.busy or not fresh):
            self.now_timed += 1  # busy now: the memory keeps its own
        else:
            self.retimed += found is not None and not fresh
            self.timed[name] = (key, Figure.now(seconds, busy=load is not None and load >= BUSY))
        return seconds, False

    def save(self) -> None:
        """Write the figures timed by this plan into the file."""
        if self.write and self.timed:
            write_figures(self.path, self.timed, note=self.note)

    def summary(self, seconds: float) -> str | None:
        """The plan's line: how long its probes took, which figures came from memory (and from
        when) and which were timed; None where it timed nothing and found nothing."""
        parts = []
        if self.recalled:
            when = recalled_when(f for _, f in self.recalled.values())
            parts.append(f"{len(self.recalled)} remembered from {when}")
        if self.timed:
            parts.append(f"{len(self.timed)} timed{' again (--reprobe)' if not self.read else ''}"
                         " and remembered" + ("" if self.recalled else
                                              " for the next run on this machine"))
        busy = sum(f.busy for _, f in self.timed.values())
        if busy:
            parts.append(f"{busy} of them while other programs were busy (a quiet plan times "
                         "those again)")
        if self.retimed:
            parts.append(f"{self.retimed} timed again, remembered from a busy machine")
        if self.now_timed:
            parts.append(f"{self.now_timed} timed for the load now (other programs kept "
                         f"{self.load:.1f} of {self.machine['usable_cores']} cores busy), "
                         "not remembered")
        if not parts:
            return None
        again = "; --reprobe times them again" if self.recalled else ""
        return f"probe figures in {seconds:.1f} s: {', '.join(parts)} ({self.path}{again})"

    def used(self, step: Key, validation: Key, threads: int | None) -> Used | None:
        """The figures of the run's own step and validation (their setups; ``threads`` the
        run's, None: torch's) as this plan used them; None after a busy look (the run then
        measures the other programs as much as this machine)."""
        if self.looked and self.busy:
            return None
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            names = [canonical(self.key(setup)) for setup in (step, validation)]
        finally:
            torch.set_num_threads(before)
        figures = {**self.recalled, **self.timed}
        found = [(figures[n][0], figures[n][1].seconds) if n in figures else None for n in names]
        return Used(self.path, *found) if any(found) else None


def off_by(measured: float, planned: float) -> float:
    """How far apart two figures are, as a ratio of at least 1."""
    return max(measured, planned) / min(measured, planned)


class CheckFigures(Callback):
    """The run's own step and validation against the figures its plan used (`Used`): either off
    by more than `WRONG` is replaced by the run's, and the model's width figures are forgotten
    with a wrong step (the next run times them again). One log line where it replaced any."""

    rank_zero_only = True  # it writes the file
    MIN_STEPS = 5  # steps measured before the run's figure counts (a probe's own number)

    def __init__(self, used: Used) -> None:
        self.used = used
        self.began: CpuTime | None = None
        self.steps: list[tuple[float, int]] = []  # (mean step after the first, steps)
        self.validations: list[float] = []  # seconds per image
        self.first = self.last = 0.0
        self.count = 0

    def on_train_start(self, run: Run) -> None:
        self.began = cpu_time()

    def on_epoch_start(self, run: Run) -> None:
        self.count = 0

    def on_step_end(self, run: Run) -> None:
        self.last = time.monotonic()  # the first step also starts the loader: not counted
        self.count += 1
        if self.count == 1:
            self.first = self.last

    def on_epoch_end(self, run: Run) -> None:
        if self.count >= 2:
            self.steps.append(((self.last - self.first) / (self.count - 1), self.count - 1))
        seconds = run.epoch.row.get("val_seconds")
        if seconds and run.validation_images:
            self.validations.append(seconds / run.validation_images)

    def on_train_end(self, run: Run) -> None:
        if distributed.active():  # each rank validates its share: not the plan's figure
            return
        step = (statistics.median(s for s, _ in self.steps)
                if sum(n for _, n in self.steps) >= self.MIN_STEPS else None)
        validation = statistics.median(self.validations) if self.validations else None
        put: Figures = {}
        said = []
        for used, seconds, what, scale, unit in (
                (self.used.step, step, "a step", 1e3, "ms"),
                (self.used.validation, validation, "validation", 1e6, "us an image")):
            if used is None or seconds is None or off_by(seconds, used[1]) <= WRONG:
                continue
            put[canonical(used[0])] = (used[0], Figure.now(seconds, "run"))
            said.append(f"{what} took {seconds * scale:.0f} {unit} against the plan's "
                        f"{used[1] * scale:.0f}")
        if not put:
            return
        ended = cpu_time()
        load = ended.others_since(self.began) if ended and self.began else None
        if load is not None and load >= BUSY:
            run.log(f"probe figures: {' and '.join(said)} (more than {WRONG:g}x apart), but "
                    f"other programs kept {load:.1f} cores busy during the run: the figures "
                    "stay (a quiet run replaces them)")
            return
        used_step = self.used.step
        wrong_step = used_step is not None and canonical(used_step[0]) in put
        forget = wrong_widths(used_step[0]) if used_step is not None and wrong_step else None
        if write_figures(self.used.path, put, forget or (lambda _: False), run.log):
            run.log(f"probe figures: {' and '.join(said)} (more than {WRONG:g}x apart), so the "
                    f"run's figures replace the plan's in {self.used.path}"
                    + (f", and {used_step[0]['model']['name']}'s width figures are forgotten "
                       "(the next run times them again)" if used_step and forget else ""))


def wrong_widths(step: Key) -> Callable[[Key], bool]:
    """Which figures go with a wrong step: the width figures of its model on its machine."""
    machine = {k: step[k] for k in ("cpu", "cores", "usable_cores", "kernels", "torch",
                                    "device")}

    def goes(key: Key) -> bool:
        return (key.get("probe") in WIDTH_PROBES and isinstance(key.get("model"), dict)
                and key["model"].get("name") == step["model"]["name"]
                and all(key.get(k) == v for k, v in machine.items()))

    return goes


def recalled_when(figures: Iterable[Figure]) -> str:
    """The oldest of ``figures``' times, to the minute."""
    return min(f.when for f in figures)[:16].replace("T", " ")
