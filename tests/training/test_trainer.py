import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from descend.config import TrainConfig
from descend.errors import CheckpointError, ConfigError
from descend.optim import OPTIMIZERS
from descend.runtime.checkpoint import load_model, read_checkpoint
from descend.training.trainer import train


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=f"imagefolder:{data}", model="mlp", epochs=3, batch_size=8, image_size=16,
                out=str(out), progress=False, download=False, lr=0.05)
    return TrainConfig(**{**base, **kw})


def test_a_run_writes_its_folder_and_learns(image_folder: Path, tmp_path: Path) -> None:
    result = train(_cfg(image_folder, tmp_path / "run", epochs=4))
    run = result.run_dir
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "config.json", "train.log"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                            "images_per_sec"}
    assert float(rows[-1]["val_acc"]) == 1.0  # three colours: trivially separable
    assert json.loads((run / "config.json").read_text())["model"] == "mlp"


def test_checkpoints_describe_themselves(image_folder: Path, tmp_path: Path) -> None:
    train(_cfg(image_folder, tmp_path / "run", epochs=1))
    ckpt = read_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["classes"] == ["blue", "green", "red"]
    assert ckpt["model"] == {"name": "mlp", "num_classes": 3, "in_channels": 3,
                             "image_size": [16, 16],  # every argument, defaults too
                             "kwargs": {"hidden": [1024, 512, 256, 64], "dropout": 0.0}}
    assert len(ckpt["normalization"]["mean"]) == 3
    assert ckpt["config"]["lr"] == 0.05 and "torch" in ckpt["versions"]
    assert {"optimizer", "scheduler", "rng", "history"} <= set(read_checkpoint(
        tmp_path / "run" / "last.pt"))
    loaded = load_model(tmp_path / "run")
    assert loaded.classes == ckpt["classes"] and not loaded.model.training


def test_resume_can_extend_a_run_unless_its_schedule_is_fixed(image_folder: Path,
                                                               tmp_path: Path) -> None:
    part = train(_cfg(image_folder, tmp_path / "step", epochs=2, schedule="step", step_size=1))
    resumed = train(resume=part.run_dir, epochs=4)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert read_checkpoint(part.run_dir / "last.pt")["epoch"] == 4
    assert "resuming" in (part.run_dir / "train.log").read_text()
    cycle = train(_cfg(image_folder, tmp_path / "cycle", epochs=2, schedule="onecycle"))
    with pytest.raises(ConfigError, match="planned for 2 epochs"):
        train(resume=cycle.run_dir, epochs=4)


KILL_SCRIPT = """
import sys
from descend.config import TrainConfig
from descend.training.trainer import train
train(TrainConfig(data="imagefolder:" + sys.argv[1], model="cnn", epochs=5, batch_size=4,
                  image_size=16, out=sys.argv[2], progress=False, download=False, lr=0.05,
                  deterministic=True))
"""


def test_killed_during_epoch_3_then_resumed_equals_uninterrupted(
    image_folder: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    """A real SIGKILL mid-run, then --resume: the final weights equal an uninterrupted run's."""
    env = {**os.environ, "DESCEND_CACHE": str(isolated_cache)}
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    subprocess.run([sys.executable, str(script), str(image_folder), str(tmp_path / "full")],
                   env=env, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, str(script), str(image_folder),
                             str(tmp_path / "killed")], env=env)
    metrics = tmp_path / "killed" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch = read_checkpoint(tmp_path / "killed" / "last.pt")["epoch"]
    assert 1 <= epoch < 5, "the kill must land before the run finished"
    train(resume=tmp_path / "killed")
    a = read_checkpoint(tmp_path / "full" / "last.pt")
    b = read_checkpoint(tmp_path / "killed" / "last.pt")
    assert b["epoch"] == 5
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]


def test_early_stopping_restores_the_best(image_folder: Path, tmp_path: Path) -> None:
    result = train(_cfg(image_folder, tmp_path / "run", epochs=30, early_stop=2,
                        monitor="val_loss", schedule="constant"))
    assert len(result.history) < 30
    best = read_checkpoint(result.run_dir / "best.pt")
    losses = [r["val_loss"] for r in result.history]
    assert best["metrics"]["val_loss"] == min(losses)
    assert "early stopping" in (result.run_dir / "train.log").read_text()


@pytest.mark.parametrize("schedule", ["constant", "step", "multistep", "exponential", "cosine",
                                      "linear", "onecycle", "plateau"])
def test_every_schedule_runs(image_folder: Path, tmp_path: Path, schedule: str) -> None:
    result = train(_cfg(image_folder, tmp_path / schedule, epochs=3, schedule=schedule,
                        step_size=1, milestones=[1, 2], gamma=0.5))
    lrs = [r["lr"] for r in result.history]
    if schedule in ("step", "multistep", "exponential"):
        assert lrs == pytest.approx([0.05, 0.025, 0.0125])
    if schedule in ("cosine", "linear", "onecycle"):
        assert len(set(lrs)) == 3


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_trains(image_folder: Path, tmp_path: Path, optimizer: str) -> None:
    result = train(_cfg(image_folder, tmp_path / optimizer, epochs=2, optimizer=optimizer,
                        lr=0.01))
    assert result.history[-1]["val_acc"] > 0.5


def test_existing_run_is_not_overwritten(image_folder: Path, tmp_path: Path) -> None:
    train(_cfg(image_folder, tmp_path / "run", epochs=1))
    before = (tmp_path / "run" / "best.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run.*--resume.*--overwrite"):
        train(_cfg(image_folder, tmp_path / "run", epochs=1))
    assert (tmp_path / "run" / "best.pt").read_bytes() == before
    train(_cfg(image_folder, tmp_path / "run", epochs=1, overwrite=True, seed=5))
    assert (tmp_path / "run" / "best.pt").read_bytes() != before


def test_resume_errors(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such run folder"):
        train(resume=tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither last.pt nor config.json"):
        train(resume=tmp_path / "empty")
    train(_cfg(image_folder, tmp_path / "run", epochs=1))
    with pytest.raises(ConfigError, match="cannot change lr"):
        train(resume=tmp_path / "run", lr=0.5)


def test_default_data_falls_back_to_the_sample(tmp_path: Path) -> None:
    result = train(TrainConfig(data_root=str(tmp_path / "empty"), download=False, epochs=1,
                               model="mlp", out=str(tmp_path / "run"), progress=False))
    assert result.data_name == "cifar10-sample"
    log = (tmp_path / "run" / "train.log").read_text()
    assert "CIFAR-10 is not available" in log and "cifar10-sample" in log


def test_named_dataset_never_falls_back(tmp_path: Path) -> None:
    from descend.errors import DataError

    with pytest.raises(DataError, match="not found"):
        train(TrainConfig(data="cifar10", data_root=str(tmp_path), download=False,
                          out=str(tmp_path / "run"), progress=False))


def test_divergence_is_a_clear_error(image_folder: Path, tmp_path: Path) -> None:
    from descend.errors import DescendError

    with pytest.raises(DescendError, match="diverged.*lower --lr"):
        train(_cfg(image_folder, tmp_path / "run", epochs=2, lr=1e30, optimizer="sgd",
                   schedule="constant"))


def test_ema_weights_are_validated_saved_and_resumed(image_folder: Path, tmp_path: Path) -> None:
    result = train(_cfg(image_folder, tmp_path / "ema", epochs=2, ema_decay=0.9,
                        schedule="constant"))
    best = read_checkpoint(result.run_dir / "best.pt")
    last = read_checkpoint(result.run_dir / "last.pt")
    assert "ema" in last and last["ema"]["num_updates"] == 2 * 6  # 48 images / batch 8
    shadow = last["ema"]["shadow"]
    if best["epoch"] == 2:  # best.pt holds what was validated: the averaged weights
        assert all(torch.equal(best["state_dict"][k], shadow[k]) for k in shadow)
    assert any(not torch.equal(last["state_dict"][k], shadow[k]) for k in shadow)
    resumed = train(resume=result.run_dir, epochs=3)
    assert read_checkpoint(resumed.run_dir / "last.pt")["ema"]["num_updates"] == 18
