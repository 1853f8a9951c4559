"""`descend lr-find` and `--lr auto`: the range test on the run's own model and data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from descend.cli.main import main
from descend.config import TrainConfig
from descend.errors import ConfigError
from descend.experiments.lr_find import lr_find, suggest
from descend.runtime.checkpoint import read_checkpoint


def test_the_suggestion_is_a_tenth_of_the_minimum_and_steepest_descent_is_beside_it() -> None:
    lrs = list(np.logspace(-5, 1, 120))
    x = np.log10(lrs)
    # falls fastest at 1e-2, bottoms out near 10^-0.5, then blows up
    loss = 2.3 - 1.5 / (1 + np.exp(-(x + 2) * 3)) + np.where(x > -0.5, (x + 0.5) ** 2 * 8, 0)
    minimum, steepest = suggest(lrs, list(loss))
    assert steepest is not None and minimum is not None
    assert math.isclose(math.log10(steepest), -2, abs_tol=0.1)
    assert math.isclose(math.log10(minimum * 10), -0.5, abs_tol=0.15)
    assert suggest(lrs[:5], list(loss[:5])) == (None, None)  # too short to say


def test_a_sweep_grows_the_rate_exponentially_and_stops_at_divergence(
        image_folder: Path) -> None:
    cfg = TrainConfig(data=f"imagefolder:{image_folder}", model="cnn", device="cpu",
                      progress=False, batch_size=8)
    finding = lr_find(cfg, steps=60, start=1e-4, end=100.0, log=lambda _: None)
    ratios = np.diff(np.log(finding.lrs))
    assert np.allclose(ratios, ratios[0]) and finding.lrs[0] == pytest.approx(1e-4)
    assert finding.diverged_at is not None and len(finding.lrs) < 60  # 100 is too much
    assert finding.suggestion is not None and 1e-4 < finding.suggestion < finding.diverged_at
    with pytest.raises(ConfigError, match="at least 13 steps"):
        lr_find(cfg, steps=5)


def test_the_command_compares_optimizers_on_one_plot(image_folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    argv = ["lr-find", "--data", f"imagefolder:{image_folder}", "--model", "mlp",
            "--optimizer", "sgd,adam", "--steps", "30", "--device", "cpu", "--no-progress",
            "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    sweeps = json.loads(printed.out)  # the log went to stderr
    assert [s["optimizer"] for s in sweeps] == ["sgd", "adam"]
    assert all(len(s["lrs"]) == len(s["smoothed"]) > 13 for s in sweeps)
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000
    assert "lr-find adam: " in printed.err
    assert printed.err.splitlines()[-1] == f"wrote lr_find.png to {tmp_path}"
    assert main(argv) == 2 and "add --overwrite" in capsys.readouterr().err
    assert main(["lr-find", "--optimizer", "sgd,lion"]) == 2  # before any sweep
    assert "unknown optimizer 'lion'" in capsys.readouterr().err


def test_muon_sweeps_like_the_others(image_folder: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    # Built from the model as train builds it (the convs on Muon, the rest on Nesterov), every
    # group at the one growing rate: the loss falls before the sweep ends.
    assert main(["lr-find", "--data", f"imagefolder:{image_folder}", "--model", "cnn",
                 "--optimizer", "muon", "--steps", "30", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path), "--json"]) == 0
    printed = capsys.readouterr()
    (muon,) = json.loads(printed.out)
    assert muon["optimizer"] == "muon" and len(muon["smoothed"]) > 13
    assert min(muon["smoothed"]) < 0.9 * muon["smoothed"][0]
    assert muon["suggestion"] is not None and "lr-find muon: " in printed.err


def test_the_groups_keep_their_ratios_while_the_rate_grows(image_folder: Path) -> None:
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen: list[list[float]] = []
    handle = register_optimizer_step_pre_hook(  # every optimizer's steps, in this process
        lambda opt, args, kwargs: seen.append([g["lr"] for g in opt.param_groups]))
    cfg = TrainConfig(data=f"imagefolder:{image_folder}", model="cnn", device="cpu",
                      progress=False, batch_size=8, optimizer="muon", partner_lr_scale=5)
    try:
        finding = lr_find(cfg, steps=20, start=1e-4, end=1.0, log=lambda _: None)
    finally:
        handle.remove()
    swept = seen[-len(finding.lrs):]  # after the plan's timed steps
    assert len(swept) == len(finding.lrs) > 13
    assert [muon for muon, _ in swept] == pytest.approx(finding.lrs)  # the rate swept
    assert [partner for _, partner in swept] == pytest.approx([5 * lr for lr in finding.lrs])


def test_the_old_plot_flag_still_writes_its_file(image_folder: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    plot = tmp_path / "lr.png"
    assert main(["lr-find", "--data", f"imagefolder:{image_folder}", "--model", "mlp",
                 "--steps", "15", "--device", "cpu", "--no-progress", "--plot", str(plot)]) == 0
    printed = capsys.readouterr()
    assert plot.is_file() and "lr-find nesterov: " in printed.out
    assert "note: --plot FILE.png is deprecated" in printed.err
    assert printed.out.splitlines()[-1] == f"wrote lr.png to {tmp_path}"


def test_train_with_lr_auto_trains_at_the_suggested_rate(image_folder: Path,
                                                         tmp_path: Path) -> None:
    assert TrainConfig.from_dict({"lr": "Auto"}).lr == "auto"
    with pytest.raises(ConfigError, match="--lr must be a number"):
        TrainConfig.from_dict({"lr": "fast"})
    out = tmp_path / "run"
    assert main(["train", "--data", f"imagefolder:{image_folder}", "--model", "mlp",
                 "--epochs", "1", "--lr", "auto", "--device", "cpu", "--no-progress",
                 "--out", str(out)]) == 0
    log = (out / "train.log").read_text()
    assert "--lr auto: training at" in log
    lr = read_checkpoint(out / "last.pt")["config"]["lr"]
    assert isinstance(lr, float) and f"training at {lr:.3g}" in log
