"""A run written by descend 0.1.0 (tests/fixtures/run-0.1.0: a tiny cnn with an EMA, one epoch
on the three-colour folder, relative path ``imagefolder:colors``) still evaluates, predicts and
resumes. Made by the 0.1.0 code (commit 930f478) with the `image_folder` recipe of conftest."""

import shutil
from pathlib import Path

import pytest

import descend
from descend.runtime.checkpoint import read_checkpoint
from descend.training.trainer import train

FIXTURE = Path(__file__).parent.parent / "fixtures" / "run-0.1.0"


@pytest.fixture
def old_run(image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(image_folder.parent)  # where "imagefolder:colors" points
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def test_a_0_1_0_checkpoint_evaluates_and_predicts(old_run: Path, image_folder: Path) -> None:
    report = descend.evaluate(old_run / "best.pt", out_dir=old_run / "eval", progress=False)
    assert report["images"] == 12 and report["classes"] == ["blue", "green", "red"]
    top = descend.load(old_run / "best.pt").predict([image_folder / "red" / "img_000.png"])
    assert top[0].top[0][0] in report["classes"]


def test_a_0_1_0_run_resumes(old_run: Path) -> None:
    before = read_checkpoint(old_run / "last.pt")
    result = train(resume=old_run, epochs=2, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2]
    after = read_checkpoint(old_run / "last.pt")
    assert after["epoch"] == 2 and after["ema"]["num_updates"] == 2 * before["ema"]["num_updates"]
