"""Probe figures remembered per machine (descend/training/planning/remembered.py): the store,
a second plan that times nothing, the load now, and a wrong figure that the run replaces."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import descend.training.planning.plan as plan
from descend.config import TrainConfig
from descend.runtime.device import cpu_threads
from descend.training.fitting.hooks import Callback
from descend.training.fitting.run import Run
from descend.training.planning import probes, remembered
from descend.training.planning.remembered import (
    MEMORY_FILE,
    CpuTime,
    ProbeMemory,
    busy_elsewhere,
    canonical,
    cpu_time,
    read_figures,
    this_machine,
    write_figures,
)
from descend.training.trainer import train
from tests.conftest import COLORS, write_class_images

MACHINE = {"cpu": "a test CPU", "cores": 2, "usable_cores": 2, "kernels": "AVX2",
           "torch": "2.x", "descend": "0.x", "device": "cpu"}
SETUP = {"probe": "step", "model": {"name": "fastres", "kwargs": {"widths": (8, 16, 32)}},
         "batch": 256, "amp": True}


def measured(seconds: float, calls: list[float]) -> Callable[[], float]:
    def measure() -> float:
        calls.append(seconds)
        return seconds
    return measure


def timed_once(path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float, load: float,
               calls: list[float]) -> ProbeMemory:
    """A memory that timed `SETUP` at ``seconds`` while other programs kept ``load`` cores
    busy (and goes on seeing that load)."""
    monkeypatch.setattr(remembered, "others_during", lambda measure: (measure(), load))
    memory = ProbeMemory(path, MACHINE)
    assert memory.seconds(SETUP, measured(seconds, calls)) == seconds
    return memory


def test_a_figure_timed_once_is_remembered_for_the_same_key_alone(tmp_path: Path) -> None:
    path = tmp_path / MEMORY_FILE
    calls: list[float] = []
    first = ProbeMemory(path, MACHINE)
    assert first.seconds(SETUP, measured(0.25, calls)) == 0.25
    first.save()
    second = ProbeMemory(path, MACHINE, known=read_figures(path))
    assert second.seconds(SETUP, measured(9.0, calls)) == 0.25  # from the file, not timed
    assert calls == [0.25]
    line = second.summary(0.1)
    assert line is not None and "1 remembered from" in line and "--reprobe" in line
    # Another width, another torch, or other threads: another figure, timed anew.
    widths = {**SETUP, "model": {"name": "fastres", "kwargs": {"widths": [16, 32, 64]}}}
    assert second.seconds(widths, measured(0.5, calls)) == 0.5
    newer = ProbeMemory(path, {**MACHINE, "torch": "3.x"}, known=read_figures(path))
    assert newer.seconds(SETUP, measured(0.3, calls)) == 0.3
    assert calls == [0.25, 0.5, 0.3]
    # A tuple and a list are the same key: the file holds lists.
    assert canonical({"w": (1, 2)}) == canonical({"w": [1, 2]})


def test_a_corrupted_or_foreign_file_is_ignored_in_one_line_and_written_anew(
        tmp_path: Path) -> None:
    path = tmp_path / MEMORY_FILE
    for text in ("{not json", json.dumps({"format": "something else"}),
                 json.dumps({"format": remembered.FORMAT, "version": 99, "figures": []}),
                 json.dumps({"format": remembered.FORMAT, "version": remembered.VERSION,
                             "figures": [{"key": {}, "seconds": -1, "when": "x"}]})):
        path.write_text(text)
        notes: list[str] = []
        assert read_figures(path, notes.append) == {}
        assert len(notes) == 1 and str(path) in notes[0] and "ignored" in notes[0]
        memory = ProbeMemory(path, MACHINE, note=notes.append, known=read_figures(path))
        assert memory.seconds(SETUP, measured(0.2, [])) == 0.2
        memory.save()
        assert len(read_figures(path)) == 1  # a sound file again


def test_a_figure_timed_on_a_busy_machine_is_timed_again_by_a_quiet_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / MEMORY_FILE
    calls: list[float] = []
    first = timed_once(path, monkeypatch, 1.7, 1.5, calls)  # a passing load made it slow
    line = first.summary(0.1)
    assert line is not None and "1 of them while other programs were busy" in line
    first.save()
    assert [f.busy for _, f in read_figures(path).values()] == [True]
    busy = ProbeMemory(path, MACHINE, known=read_figures(path), load=1.5, looked=True)
    assert busy.seconds(SETUP, measured(2.0, calls)) == 1.7  # busy now too: it serves
    monkeypatch.setattr(remembered, "others_during", lambda measure: (measure(), 0.0))
    quiet_plan = ProbeMemory(path, MACHINE, known=read_figures(path), load=0.0, looked=True)
    assert quiet_plan.seconds(SETUP, measured(0.3, calls)) == 0.3
    line = quiet_plan.summary(0.1)
    assert line is not None and "1 timed again, remembered from a busy machine" in line
    quiet_plan.save()
    assert [(f.seconds, f.busy) for _, f in read_figures(path).values()] == [(0.3, False)]
    assert calls == [1.7, 0.3]


def test_the_load_during_a_timing_is_the_other_programs_cpu_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    moments = iter([CpuTime(0.0, 0.0, 0.0), CpuTime(3.0, 1.0, 1.0)])
    monkeypatch.setattr(remembered, "cpu_time", lambda *a, **k: next(moments))
    assert remembered.others_during(lambda: 0.5) == (0.5, 2.0)
    monkeypatch.setattr(remembered, "cpu_time", lambda *a, **k: None)
    assert remembered.others_during(lambda: 0.5) == (0.5, None)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ")
def test_a_write_that_fails_keeps_the_previous_file_and_does_not_stop_the_run(
        tmp_path: Path) -> None:
    path = tmp_path / MEMORY_FILE
    assert write_figures(path, {canonical(k): (k, remembered.Figure.now(0.1)) for k in [SETUP]})
    before = path.read_bytes()
    many = {canonical(k): (k, remembered.Figure.now(0.1))
            for k in ({**SETUP, "batch": b} for b in range(200))}
    notes: list[str] = []
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 100, limit[1]))
    try:
        written = write_figures(path, many, note=notes.append)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    assert not written and len(notes) == 1 and "not remembered" in notes[0]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [MEMORY_FILE]  # no temporary file left


def test_writes_merge_with_what_another_run_wrote_and_keep_the_newest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / MEMORY_FILE
    one, two = {**SETUP, "batch": 1}, {**SETUP, "batch": 2}
    write_figures(path, {canonical(one): (one, remembered.Figure(0.1, "2024-01-01T00:00"))})
    write_figures(path, {canonical(two): (two, remembered.Figure(0.2, "2025-01-01T00:00"))})
    assert {f.seconds for _, f in read_figures(path).values()} == {0.1, 0.2}
    monkeypatch.setattr(remembered, "KEEP", 1)
    write_figures(path, {})
    assert [f.seconds for _, f in read_figures(path).values()] == [0.2]


def test_the_machine_is_read_from_the_cpu_and_torch(tmp_path: Path) -> None:
    import torch

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test Xeon\nphysical id\t: 0\ncore id\t: 0\n"
                    "processor\t: 1\nmodel name\t: Test Xeon\nphysical id\t: 0\ncore id\t: 0\n")
    machine = this_machine(torch.device("cpu"), info)
    assert machine["cpu"] == "Test Xeon" and machine["physical_cores"] == 1  # hyperthreads
    assert machine["torch"] == torch.__version__ and machine["device"] == "cpu"
    assert machine["kernels"] == torch.backends.cpu.get_cpu_capability()
    assert busy_elsewhere(0.01, tmp_path / "missing") is None
    assert cpu_time(tmp_path / "missing") is None
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 1000 5 0 0 0 0 0\n")  # counters that do not move: idle
    assert busy_elsewhere(0.01, stat) == 0.0
    # 2 s of 2 cores busy over 1 s, 0.5 s of it this process's: others kept 1.5 cores busy.
    assert CpuTime(12.0, 1.5, 11.0).others_since(CpuTime(10.0, 1.0, 10.0)) == 1.5


class Counted:
    """Counts the probes' timings: the width probe's steps and validations
    (`probes.fit_widths`) apart from the run's own (`plan.Probe`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        for module, prefix in ((probes, "width"), (plan, "run")):
            for name in ("step_seconds", "eval_seconds_per_image"):
                monkeypatch.setattr(module, name, self.counting(f"{prefix} {name}",
                                                                getattr(module, name)))

    def counting(self, name: str, timed: Callable[..., float]) -> Callable[..., float]:
        def count(*args: Any, **kwargs: Any) -> float:
            self.calls[name] += 1
            return timed(*args, **kwargs)
        return count


def budgeted(folder: Path, out: Path, budget: str = "3s", **changes: Any) -> TrainConfig:
    return TrainConfig(data=f"imagefolder:{folder}", image_size=16, batch_size=8,
                       out=str(out), progress=False, download=False, time_budget=budget,
                       amp=False, **changes)  # one precision: half the width probe's steps


class PlanOnly(Exception):
    """Raised as training starts: the plan is made, logged and remembered."""


class StopAtStart(Callback):
    def on_train_start(self, run: Run) -> None:
        raise PlanOnly


def plan_of(cfg: TrainConfig) -> tuple[str, dict[str, Any]]:
    """(the log, config.json) of ``cfg``'s plan, without training."""
    with pytest.raises(PlanOnly):
        train(cfg, callbacks=[StopAtStart()])
    out = Path(cfg.out or "")
    return (out / "train.log").read_text(), json.loads((out / "config.json").read_text())


def quiet(monkeypatch: pytest.MonkeyPatch, cores: float = 0.0, during: float = 0.0) -> None:
    """The load the plan sees (``cores``, `remembered.busy_elsewhere`) and the run (``during``,
    from `remembered.cpu_time` at its start and end), whatever else this machine runs."""
    monkeypatch.setattr(remembered, "busy_elsewhere", lambda *a, **k: cores)
    monkeypatch.setattr(remembered, "others_during", lambda measure: (measure(), cores))
    moments = iter([CpuTime(0.0, 0.0, 0.0), CpuTime(during * 10, 0.0, 10.0)])
    monkeypatch.setattr(remembered, "cpu_time", lambda *a, **k: next(moments))


@dataclass(frozen=True)
class FirstPlan:
    folder: Path
    log: str
    config: dict[str, Any]
    memory: str  # probes.json as the plan left it
    calls: Counter[str]

    def remembered(self, cache: Path) -> Path:
        """This plan's figures, in ``cache``."""
        cache.mkdir(parents=True, exist_ok=True)
        (cache / MEMORY_FILE).write_text(self.memory)
        return cache / MEMORY_FILE


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread for the module: no thread probe, whose choice (a real timing, on a
    machine that may be busy) would change the keys from one plan to the next."""
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> FirstPlan:
    """The plan of a fastres run on a machine with no figures yet, made once for the module: a
    budget long enough for every width of the ladder, so that the widest is chosen however long
    the probes took."""
    folder = tmp_path_factory.mktemp("colors")
    for k, (name, color) in enumerate(COLORS.items()):
        write_class_images(folder / name, color, 20, seed=k)
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as monkeypatch:
        quiet(monkeypatch)
        counted = Counted(monkeypatch)
        log, config = plan_of(budgeted(folder, tmp_path_factory.mktemp("run"), "10m",
                                       cache_dir=str(cache)))
    return FirstPlan(folder, log, config, (cache / MEMORY_FILE).read_text(), counted.calls)


def test_a_plan_times_its_probes_and_remembers_them(first: FirstPlan) -> None:
    assert first.calls["width step_seconds"] and first.calls["run step_seconds"]
    assert "timed and remembered for the next run on this machine" in first.log
    assert first.config["model_args"]["widths"] == [64, 256, 256]


def test_a_second_plan_on_the_same_machine_times_nothing(
        first: FirstPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        isolated_cache: Path) -> None:
    first.remembered(isolated_cache)
    quiet(monkeypatch)
    counted = Counted(monkeypatch)
    log, second = plan_of(budgeted(first.folder, tmp_path / "second", "10m"))
    assert sum(counted.calls.values()) == 0, counted.calls
    line = next(li for li in log.splitlines() if li.startswith("probe figures in"))
    assert "remembered from" in line and "timed" not in line, line
    # The same plan from the same figures; more epochs: the budget counts from the first probe.
    assert second == {**first.config, "out": second["out"], "epochs": second["epochs"],
                      "cache_dir": None}
    assert second["epochs"] >= first.config["epochs"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the thread probe needs 2 cores")
def test_a_remembered_plan_on_a_quiet_machine_trains_with_torchs_threads_untimed(
        first: FirstPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet(monkeypatch)
    widths = first.config["model_args"]
    with cpu_threads(2):
        plan_of(budgeted(first.folder, tmp_path / "two", "10m", threads=2, model_args=widths))
        counted = Counted(monkeypatch)
        log, config = plan_of(budgeted(first.folder, tmp_path / "probe", "10m",
                                       model_args=widths))
    assert sum(counted.calls.values()) == 0, counted.calls
    assert "threads" not in log and config["threads"] is None


def test_reprobe_times_the_figures_again(first: FirstPlan, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         isolated_cache: Path) -> None:
    first.remembered(isolated_cache)
    quiet(monkeypatch)
    counted = Counted(monkeypatch)
    log, _ = plan_of(budgeted(first.folder, tmp_path / "again", "10m", reprobe=True,
                              model_args=first.config["model_args"]))
    assert counted.calls["run step_seconds"] and counted.calls["run eval_seconds_per_image"]
    assert "timed again (--reprobe) and remembered" in log


def test_on_a_busy_machine_the_threads_and_the_length_are_timed_and_not_remembered(
        first: FirstPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        isolated_cache: Path) -> None:
    path = first.remembered(isolated_cache)
    quiet(monkeypatch, cores=1.5)
    counted = Counted(monkeypatch)
    log, _ = plan_of(budgeted(first.folder, tmp_path / "busy", "10m"))
    assert counted.calls["width step_seconds"] == 0  # the widths: compared with each other
    assert counted.calls["run step_seconds"] >= 1  # the run's length: for the load now
    assert "timed for the load now (other programs kept 1.5 of" in log
    assert path.read_text() == first.memory


def test_a_wrong_figure_is_replaced_by_the_runs_own(
        first: FirstPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        isolated_cache: Path) -> None:
    path = first.remembered(isolated_cache)
    document = json.loads(path.read_text())
    for figure in document["figures"]:
        if figure["key"]["probe"] == "step":  # as if timed while the machine was 4x slower
            figure["seconds"] *= 4
    path.write_text(json.dumps(document))
    assert any(k["probe"] == "width step" for k, _ in read_figures(path).values())

    quiet(monkeypatch)
    # The widths the first plan chose: the run's own step is a remembered figure.
    result = train(budgeted(first.folder, tmp_path / "run", "5s",
                            model_args=first.config["model_args"]))
    assert result.plan is not None and result.plan.figures is not None
    used = result.plan.figures.step
    assert used is not None
    figures = read_figures(path)
    _, figure = figures[canonical(used[0])]
    assert figure.source == "run" and 2 * figure.seconds < used[1]
    assert not any(k["probe"] == "width step" for k, _ in figures.values())  # timed again next
    log = (result.run_dir / "train.log").read_text()
    assert "so the run's figures replace the plan's" in log
    assert "fastres's width figures are forgotten" in log


def test_a_busy_run_leaves_the_figures_as_they_are(
        first: FirstPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        isolated_cache: Path) -> None:
    """A run while other programs keep a core busy measures them too: it cannot tell a wrong
    figure from a busy machine."""
    path = first.remembered(isolated_cache)
    document = json.loads(path.read_text())
    for figure in document["figures"]:
        figure["seconds"] *= 4
    path.write_text(json.dumps(document))
    before = path.read_text()
    quiet(monkeypatch, during=1.5)  # quiet as the plan begins, busy while the run trains
    result = train(budgeted(first.folder, tmp_path / "run", "3s",
                            model_args=first.config["model_args"]))
    assert path.read_text() == before
    log = (result.run_dir / "train.log").read_text()
    assert "but other programs kept 1.5 cores busy during the run: the figures stay" in log


def test_a_fresh_look_times_again_and_replaces_a_quiet_figure_unless_busy_now(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / MEMORY_FILE
    calls: list[float] = []
    first = timed_once(path, monkeypatch, 0.58, 0.0, calls)  # a slow moment, not busy
    first.save()
    busy = ProbeMemory(path, MACHINE, known=read_figures(path), load=1.5, looked=True)
    assert busy.figure(SETUP, measured(0.9, calls), fresh=True) == (0.9, False)
    busy.save()  # timed while others were busy: the memory keeps its quiet figure
    assert [f.seconds for _, f in read_figures(path).values()] == [0.58]
    quiet = ProbeMemory(path, MACHINE, known=read_figures(path), load=0.0, looked=True)
    assert quiet.figure(SETUP, measured(0.21, calls), fresh=True) == (0.21, False)
    quiet.save()
    assert [f.seconds for _, f in read_figures(path).values()] == [0.21]
    assert calls == [0.58, 0.9, 0.21]


def test_a_remembered_verdict_against_native_bf16_gets_a_fresh_look_that_replaces_it(
        first: FirstPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        isolated_cache: Path) -> None:
    import descend.runtime.precision as precision

    quiet(monkeypatch)
    monkeypatch.setattr(precision, "native_bf16", lambda flags=None: "amx_bf16")
    bf16 = {"seconds": 0.29}  # a slow moment: bfloat16 timed as slow as float32

    def step_seconds(*args: Any, **kwargs: Any) -> float:
        amp = args[4]
        return bf16["seconds"] if amp else 0.30

    monkeypatch.setattr(plan, "step_seconds", step_seconds)
    cfg = TrainConfig(data=f"imagefolder:{first.folder}", model="cnn", image_size=16,
                      batch_size=8, epochs=1, progress=False, download=False, amp=True)
    log, config = plan_of(dataclasses.replace(cfg, out=str(tmp_path / "a")))
    assert "precision float32" in log and "timed twice" in log
    bf16["seconds"] = 0.10  # the machine as it is: the remembered 0.29 would say float32 again
    log, config = plan_of(dataclasses.replace(cfg, out=str(tmp_path / "b")))
    assert "precision bfloat16 autocast" in log and "300 ms in float32 and 100 ms" in log
    figures = read_figures(isolated_cache / MEMORY_FILE)
    assert sorted(f.seconds for _, f in figures.values()) == [0.10, 0.30]
