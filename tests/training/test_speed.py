"""The speed features: the precision choice, --time-budget planning, and the default recipe."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from descend.config import TrainConfig, parse_duration
from descend.data.augment import parse_augment
from descend.errors import ConfigError
from descend.models import ModelSpec, Recipe
from descend.models.fastres import RECIPE as FASTRES
from descend.runtime.checkpoint import read_checkpoint
from descend.runtime.device import keep_freed_memory
from descend.runtime.precision import (
    amp_candidates,
    autocast,
    choose_amp,
    cpu_flags,
    native_bf16,
)
from descend.training.fitting.budget import EpochCosts, steps_that_fit
from descend.training.fitting.callbacks import Callback
from descend.training.fitting.run import Run
from descend.training.planning import probes
from descend.training.planning.probes import fit_widths, step_seconds
from descend.training.planning.recipe import with_recipe
from descend.training.trainer import train

CPU = torch.device("cpu")


def test_durations_parse_and_bad_ones_name_the_fix() -> None:
    assert parse_duration("90s") == 90 and parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400 and parse_duration("1.5h") == 5400
    assert parse_duration("45") == 45
    for bad in ("5 minutes", "m5", "0s", "-3m", "5mm"):
        with pytest.raises(ConfigError, match="time-budget"):
            parse_duration(bad)
    with pytest.raises(ConfigError, match="time-budget"):
        TrainConfig(time_budget="soon").validate()


def test_cpu_flags_are_read_not_assumed(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert native_bf16(cpu_flags(info)) == "avx512_bf16"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_tile amx_bf16 avx512_bf16\n")
    assert native_bf16(cpu_flags(info)) == "amx_bf16"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert native_bf16(cpu_flags(info)) is None
    assert cpu_flags(tmp_path / "missing") == set()


def test_bf16_is_chosen_only_where_the_cpu_has_it_and_it_measurably_pays() -> None:
    lines: list[str] = []
    timings = {False: 0.30, True: 0.12}
    measure = timings.__getitem__
    assert not choose_amp(True, CPU, measure, lines.append, flags={"avx2"})
    assert "no native bfloat16" in lines[-1]
    assert choose_amp(True, CPU, measure, lines.append, flags={"amx_bf16"})
    assert "2.50x" in lines[-1] and "amx_bf16" in lines[-1]
    timings[True] = 0.29  # supported, but too little gain
    assert not choose_amp(True, CPU, measure, lines.append, flags={"avx512_bf16"})
    assert "too little to pay" in lines[-1]
    assert not choose_amp(False, CPU, measure, lines.append, flags={"amx_bf16"})
    assert choose_amp(True, torch.device("cuda"), measure, lines.append)


def test_a_verdict_against_native_bf16_is_timed_again_and_the_second_timing_decides() -> None:
    lines: list[str] = []
    first = {False: 0.598, True: 0.582}  # a slow moment during the bfloat16 probe
    second = {False: 0.611, True: 0.211}
    asked: list[bool] = []

    def again(amp: bool) -> float:
        asked.append(amp)
        return second[amp]

    assert choose_amp(True, CPU, first.__getitem__, lines.append, flags={"amx_bf16"},
                      again=again)
    assert asked == [False, True]
    assert "611 ms in float32 and 211 ms" in lines[-1] and "598 and 582 ms" in lines[-1]
    second[True] = 0.60  # the second look agrees: float32, said with both timings
    assert not choose_amp(True, CPU, first.__getitem__, lines.append, flags={"amx_bf16"},
                          again=again)
    assert "too little to pay" in lines[-1] and "timed twice" in lines[-1]
    asked.clear()  # a verdict for bfloat16 needs no second look
    assert choose_amp(True, CPU, {False: 0.3, True: 0.1}.__getitem__, lines.append,
                      flags={"amx_bf16"}, again=again)
    assert asked == []


def test_the_precisions_timed_are_those_the_device_can_choose() -> None:
    assert amp_candidates(True, CPU, flags={"avx2"}) == (False,)
    assert amp_candidates(True, CPU, flags={"avx512_bf16"}) == (False, True)
    assert amp_candidates(False, CPU, flags={"amx_bf16"}) == (False,)
    assert amp_candidates(True, torch.device("cuda")) == (True,)
    assert amp_candidates(True, torch.device("mps")) == (False,)


def test_widths_are_fitted_in_the_faster_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each ladder step costs 3x the one before in float32, 1.5x under bfloat16: a plan from
    # float32 alone would pick a narrower net than the run, which trains in bfloat16, affords.
    def fake_step(model: nn.Module, batches: object, make_optimizer: object,
                  device: torch.device, amp: bool) -> float:
        rank = [w[0] for w in FASTRES.widths].index(model.groups[0].conv1.out_channels)
        return 0.01 * (1.5 if amp else 3.0) ** rank

    monkeypatch.setattr(probes, "step_seconds", fake_step)
    spec = ModelSpec("fastres", 10, 3, (32, 32), {})
    args = (spec, FASTRES, 100.0, time.monotonic(), 8, 500, 0, CPU, False)
    fp32, _ = fit_widths(*args, precisions=(False,))
    both, notes = fit_widths(*args, precisions=(False, True))
    assert FASTRES.widths.index(both) > FASTRES.widths.index(fp32), (fp32, both, notes)


def test_each_rung_of_the_ladder_needs_its_own_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each rung costs twice the one before; the budget fits 12, 6 and 3 epochs of them. A
    # ladder needing 7 epochs everywhere stops at the first; needing 5 of the second, it
    # takes the second, and never the third (3 < 5), whatever the first needs.
    ladder = ((8, 16, 32), (16, 32, 64), (32, 64, 128))

    def fake_step(model: nn.Module, batches: object, make_optimizer: object,
                  device: torch.device, amp: bool) -> float:
        return 1.0 * 2 ** [w[0] for w in ladder].index(model.groups[0].conv1.out_channels)

    monkeypatch.setattr(probes, "step_seconds", fake_step)
    monkeypatch.setattr(probes, "eval_seconds_per_image", lambda *_: 0.0)
    monkeypatch.setattr(probes, "OVERHEAD", 0.0)
    monkeypatch.setattr(probes, "MARGIN", 0.0)
    spec = ModelSpec("fastres", 10, 3, (32, 32), {})
    for needs, chosen in ((7, ladder[0]), ((9, 5, 5), ladder[1]), ((1, 6, 3), ladder[2])):
        recipe = Recipe(widths=ladder, min_epochs=needs)  # 2 s to spare for the model builds
        widths, notes = fit_widths(spec, recipe, 122.0, time.monotonic(), 8, 10, 0, CPU, False)
        assert widths == chosen, (needs, notes)
    assert notes[1].endswith(": 6/6") and notes[2].endswith(": 3/3"), notes


def test_a_ladder_needs_one_figure_or_one_per_rung() -> None:
    recipe = Recipe(widths=((8,), (16,)), min_epochs=(3, 5))
    assert [recipe.epochs_needed(w) for w in recipe.widths] == [3, 5]
    assert Recipe(widths=((8,), (16,)), min_epochs=4).epochs_needed((16,)) == 4
    with pytest.raises(ValueError, match="2 figures for 3 widths"):
        Recipe(widths=((8,), (16,), (32,)), min_epochs=(3, 5))


def test_the_allocator_setting_yields_to_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not keep_freed_memory()
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("DESCEND_MALLOC", "default")
    assert not keep_freed_memory()
    monkeypatch.delenv("DESCEND_MALLOC")
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory()


def test_cpu_autocast_runs_the_products_in_bf16_and_keeps_the_weights_fp32() -> None:
    model = nn.Linear(8, 4)
    with autocast(CPU, True):
        out = model(torch.randn(2, 8))
    assert out.dtype == torch.bfloat16 and model.weight.dtype == torch.float32
    with autocast(CPU, False):
        assert model(torch.randn(2, 8)).dtype == torch.float32


def test_step_probe_leaves_the_model_untouched() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4,))) for _ in range(6)]
    seconds = step_seconds(model, batches, lambda p: torch.optim.SGD(p, lr=1.0), CPU, False)
    assert seconds > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_the_steps_that_fit_count_each_validation_and_cut_the_last_epoch() -> None:
    # 100 steps an epoch of 0.1 s, 0.5 s of overhead and 1 s of validation: 11.5 s an epoch.
    every = EpochCosts(step=0.1, overhead=0.5, validation=1.0, val_every=1)
    n = steps_that_fit(120, every, 100)
    assert n == 1035  # 10 whole epochs (115 s), then 35 steps and a last validation (5 s)

    def cost(k: int) -> float:
        return k * 0.1 + -(-k // 100) * 1.5

    assert cost(n) <= 120 < cost(n + 1)
    assert steps_that_fit(8, every, 100) == 65  # part of one epoch
    assert steps_that_fit(1.0, every, 100) == 0  # not even a validation fits
    # Mid-epoch, 40 steps left in it: its validation is still owed, and only then a new one.
    assert steps_that_fit(10, every, 100, left_in_epoch=40) == 40 + 30
    assert steps_that_fit(1.5, every, 100, left_in_epoch=40) == 0
    # Validating the last epoch alone: 10.5 s an epoch, and one validation at the end.
    last = EpochCosts(step=0.1, overhead=0.5, validation=1.0, val_every=0)
    assert steps_that_fit(120, last, 100) == 1130  # 113 s of steps, 12 epochs' overhead, 1 val
    # Every third epoch, counted from where the run is: epochs 3 and 6 and the last.
    third = EpochCosts(step=0.1, overhead=0.5, validation=1.0, val_every=3)
    assert third.validations(0, 6) == 3 and third.validations(3, 5) == 1
    # 585 steps: 58.5 s, 6 epochs of overhead (3 s), validations of epochs 3 and 6 (2 s).
    assert steps_that_fit(63.5, third, 100) == 585


def test_recipe_fills_only_what_was_left_open() -> None:
    cfg = with_recipe(TrainConfig(), "cifar10")
    assert cfg.model == "fastres" and cfg.label_smoothing == 0.2 and cfg.weight_decay == 2.5e-4
    assert cfg.augment == "reflect-crop:2,alternating-flip"
    assert cfg.model_args == {"tta": 2, "whiten_bias_epochs": 3}
    mnist = with_recipe(TrainConfig(data="mnist"), "mnist")
    assert not parse_augment(mnist.augment).mirrors()
    assert mnist.model_args == {"tta": 0, "whiten_bias_epochs": 3}
    theirs = with_recipe(TrainConfig(model_args={"whiten_bias_epochs": None}), "cifar10")
    assert theirs.model_args == {"tta": 2, "whiten_bias_epochs": None}  # the user's win
    mine = with_recipe(TrainConfig(model="cnn", label_smoothing=0.0, augment="none"), "cifar10")
    assert (mine.model, mine.label_smoothing, mine.augment, mine.model_args) == (
        "cnn", 0.0, "none", {})
    mlp = with_recipe(TrainConfig(model="mlp"), "cifar10")
    assert (mlp.label_smoothing, mlp.weight_decay) == (0.1, 5e-4)
    assert with_recipe(TrainConfig(weight_decay=0.0), "cifar10").weight_decay == 0.0


def test_a_budgeted_run_plans_its_epochs_and_ends_in_time(image_folder: Path,
                                                          tmp_path: Path) -> None:
    cfg = TrainConfig(data=f"imagefolder:{image_folder}", image_size=16, batch_size=8,
                      out=str(tmp_path / "run"), progress=False, download=False,
                      time_budget="6s", epochs=1000)
    start = time.monotonic()
    result = train(cfg)
    took = time.monotonic() - start
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["model"] == "fastres" and 1 <= saved["epochs"] < 1000
    log = (result.run_dir / "train.log").read_text()
    assert "time budget 6s" in log and "steps planned" in log
    assert took < 6 + 10  # the budget, plus loading and the test pass on a slow machine
    assert result.budget is not None and result.budget["seconds"] == 6
    # spent, not left idle; over by at most the last epoch and validation on a busy CI machine
    assert 0.8 * 6 <= result.budget["spent"] <= 1.2 * 6


def test_a_budget_shorter_than_an_epoch_trains_part_of_one(image_folder: Path,
                                                          tmp_path: Path) -> None:
    cfg = TrainConfig(data=f"imagefolder:{image_folder}", image_size=16, batch_size=8,
                      out=str(tmp_path / "run"), progress=False, download=False,
                      time_budget="0.5s", epochs=5)
    result = train(cfg)
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["epochs"] == 1
    assert "step(s) of one epoch" in (result.run_dir / "train.log").read_text()
    assert len(result.history) == 1


def test_a_resumed_run_keeps_the_precision_it_began_with(image_folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import descend.training.planning.plan as plan

    cfg = TrainConfig(data=f"imagefolder:{image_folder}", model="cnn", image_size=16,
                      batch_size=8, epochs=1, out=str(tmp_path / "run"), progress=False,
                      download=False, schedule="constant")
    monkeypatch.setattr(plan, "choose_amp", lambda *a, **k: True)  # timing said bfloat16
    train(cfg)
    # On resuming, a new timing would say float32: the run keeps bfloat16 all the same.
    monkeypatch.setattr(plan, "choose_amp", lambda *a, **k: False)
    result = train(resume=tmp_path / "run", epochs=2)
    assert [r["epoch"] for r in result.history] == [1, 2]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "precision bfloat16 autocast, as the run began" in log


def test_a_deterministic_cpu_run_does_not_time_its_precision(
        image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import descend.training.planning.plan as plan

    def timed(*_: object, **__: object) -> bool:
        raise AssertionError("--deterministic must not choose its precision by timing")

    monkeypatch.setattr(plan, "choose_amp", timed)
    monkeypatch.setattr(plan, "native_bf16", lambda: "avx512_bf16")
    train(TrainConfig(data=f"imagefolder:{image_folder}", model="cnn", image_size=16,
                      batch_size=8, epochs=1, out=str(tmp_path / "run"), progress=False,
                      download=False, deterministic=True, device="cpu"))
    log = (tmp_path / "run" / "train.log").read_text()
    assert "--deterministic fixes the precision" in log


class StopAfterEpoch(Callback):
    """Ends the process's run after epoch ``n`` (its last.pt written), as a kill would."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, run: Run) -> None:
        if run.epoch.index + 1 == self.n:
            raise KeyboardInterrupt


@pytest.mark.parametrize("off_by", [4.0, 0.25])
def test_the_closed_loop_corrects_a_bad_probe(image_folder: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              off_by: float) -> None:
    """A probe 4x too slow plans too few steps, 4x too fast too many: the run measures itself
    within its first epoch and ends at the budget all the same."""
    import descend.training.planning.plan as plan

    timed = plan.Probe.step
    monkeypatch.setattr(plan.Probe, "step", lambda self, amp, steps=5, fresh=False:
                        off_by * timed(self, amp, steps, fresh))
    result = train(TrainConfig(data=f"imagefolder:{image_folder}", image_size=16, batch_size=4,
                               model="cnn", out=str(tmp_path / "run"), progress=False,
                               download=False, time_budget="5s"))
    assert result.budget is not None and result.budget["revisions"]
    # Uncorrected, the run would spend about 4x or 1/4 of its budget; the tight figures are
    # B3's (benchmarks/b3_budget.py), not a timed test's on a shared CI machine.
    assert 0.8 * 5 <= result.budget["spent"] <= 1.2 * 5, result.budget
    log = (result.run_dir / "train.log").read_text()
    assert "steps into epoch 1" in log  # corrected before the first epoch ended


def test_a_resumed_budgeted_run_goes_on_with_the_budget_left(image_folder: Path,
                                                             tmp_path: Path) -> None:
    cfg = TrainConfig(data=f"imagefolder:{image_folder}", image_size=16, batch_size=4,
                      model="cnn", out=str(tmp_path / "run"), progress=False, download=False,
                      time_budget="4s")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopAfterEpoch(2)])
    kept = read_checkpoint(tmp_path / "run" / "last.pt")
    assert kept["epoch"] == 2 and 0 < kept["time_budget"]["left"] < 4
    assert kept["horizon"]["step"] == 2 * 12  # 48 images at batch 4
    start = time.monotonic()
    result = train(resume=tmp_path / "run", progress=False)
    took = time.monotonic() - start
    assert [r["epoch"] for r in result.history][:3] == [1, 2, 3]
    assert "left of the run's budget" in (result.run_dir / "train.log").read_text()
    assert took < kept["time_budget"]["left"] + 6  # the budget left, not a new one


def test_a_small_dataset_trains_enough_steps_by_default(image_folder: Path,
                                                         tmp_path: Path) -> None:
    result = train(TrainConfig(data=f"imagefolder:{image_folder}", image_size=16,
                               model="mlp", out=str(tmp_path / "run"), progress=False,
                               download=False))
    saved = json.loads((result.run_dir / "config.json").read_text())
    # 48 images at batch 8: 6 steps an epoch, so 84 epochs give the 500 steps (mlp is quick).
    assert saved["epochs"] == 84 and len(result.history) == 84
    assert "a small dataset, so the run is sized to 504 steps" in (
        result.run_dir / "train.log").read_text()
    explicit = train(TrainConfig(data=f"imagefolder:{image_folder}", image_size=16, epochs=2,
                                 model="mlp", out=str(tmp_path / "two"), progress=False,
                                 download=False))
    assert len(explicit.history) == 2


def test_a_run_can_validate_every_nth_epoch_and_always_its_last(image_folder: Path,
                                                               tmp_path: Path) -> None:
    result = train(TrainConfig(data=f"imagefolder:{image_folder}", image_size=16, epochs=5,
                               model="mlp", out=str(tmp_path / "run"), progress=False,
                               download=False, val_every=2))
    validated = [r["epoch"] for r in result.history if r["val_acc"] is not None]
    assert validated == [2, 4, 5] and result.best_epoch in validated
    assert (result.run_dir / "best.pt").is_file()
    log = (result.run_dir / "train.log").read_text()
    assert "val -" in log
    rows = (result.run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 6 and ",,," in rows[1]  # epoch 1: no validation figures
    with pytest.raises(ConfigError, match="--early-stop"):
        TrainConfig(early_stop=3, val_every=0).validate()


def test_a_budgeted_run_validates_its_last_epoch_only_by_default(image_folder: Path,
                                                                 tmp_path: Path) -> None:
    result = train(TrainConfig(data=f"imagefolder:{image_folder}", image_size=16, batch_size=4,
                               model="cnn", out=str(tmp_path / "run"), progress=False,
                               download=False, time_budget="3s"))
    assert len(result.history) > 1
    assert [r["val_acc"] is None for r in result.history] == [True] * (
        len(result.history) - 1) + [False]
    log = (result.run_dir / "train.log").read_text()
    assert "validation at the last epoch only" in log
