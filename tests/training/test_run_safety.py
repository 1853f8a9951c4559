"""Nothing already saved is lost: --overwrite, two runs on one folder, a run killed early,
disk errors, resumes that would silently change the run. Real files and processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from descend.config import TrainConfig
from descend.errors import ConfigError, DataError
from descend.runtime.checkpoint import read_checkpoint
from descend.training.fitting.callbacks import Callback
from descend.training.fitting.run import Run
from descend.training.keeping.run_folder import RunFolder
from descend.training.trainer import train


def _cfg(data: Path | str, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=f"imagefolder:{data}", model="mlp", epochs=1, batch_size=8, image_size=16,
                out=str(out), progress=False, download=False, lr=0.05)
    return TrainConfig(**{**base, **kw})


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(
        image_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_cfg(image_folder, run))
    before = {n: (run / n).read_bytes() for n in ("best.pt", "last.pt", "train.log")}
    with pytest.raises(DataError):  # a mistyped --data: the old run must survive it
        train(_cfg(tmp_path / "typo", run, overwrite=True))
    assert {n: (run / n).read_bytes() for n in before} == before
    train(_cfg(image_folder, run, overwrite=True, seed=3))
    assert (run / "best.pt").read_bytes() != before["best.pt"]
    log = (run / "train.log").read_text()
    assert log.count("input pipeline:") == 1  # the new run's log only
    assert not list(run.glob(".*.tmp"))


def test_a_run_folder_is_locked_while_a_run_owns_it(image_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    owner = RunFolder.open(run, new=True)
    try:
        with pytest.raises(ConfigError, match=f"in use by another `descend train` "
                                              f"\\(process {os.getpid()}\\)"):
            train(_cfg(image_folder, run))
    finally:
        owner.close()
    train(_cfg(image_folder, run))  # free again


def test_a_lock_left_by_a_killed_run_does_not_block(image_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = ("import sys, time; from pathlib import Path; "
            "from descend.training.keeping.run_folder import RunFolder; "
            "RunFolder.open(Path(sys.argv[1]), new=True); print('locked', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match="in use"):
        train(_cfg(image_folder, run))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    train(_cfg(image_folder, run))


class Interrupt(Callback):
    def on_step_end(self, run: Run) -> None:
        raise KeyboardInterrupt


def test_a_run_stopped_in_its_first_epoch_resumes_from_the_start(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(image_folder, run, epochs=2), callbacks=[Interrupt()])
    assert (run / "config.json").is_file() and not (run / "last.pt").exists()
    result = train(resume=run)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert "from the start: it was stopped during its first epoch" in capsys.readouterr().out


def test_resume_takes_a_checkpoint_file_and_stores_absolute_data(
        image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(image_folder.parent)
    train(_cfg(image_folder.name, tmp_path / "run", epochs=1, schedule="constant"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"] == f"imagefolder:{image_folder}"  # resolved, not "colors"
    monkeypatch.chdir(tmp_path / "run")  # elsewhere: "colors" would be another folder
    result = train(resume=tmp_path / "run" / "last.pt", epochs=2)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_resume_refuses_data_that_changed(image_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_cfg(image_folder, run, epochs=1, schedule="constant"))
    norm = read_checkpoint(run / "last.pt")["normalization"]
    extra = image_folder / "red" / "extra.png"
    Image.new("RGB", (16, 16), (250, 250, 250)).save(extra)  # changes the mean too
    with pytest.raises(DataError, match="1 file.* added .* --allow-added-data"):
        train(resume=run, epochs=2)
    result = train(resume=run, epochs=2, allow_added_data=True)
    assert len(result.history) == 2
    assert read_checkpoint(run / "last.pt")["normalization"] == norm  # the run's own, kept
    extra.unlink()
    (image_folder / "red" / "img_000.png").unlink()
    with pytest.raises(DataError, match="file.* of the run's data are gone"):
        train(resume=run, epochs=3)
    shutil.copytree(image_folder / "red", image_folder / "pink")
    with pytest.raises(DataError, match="classes"):
        train(resume=run, epochs=3)


def test_an_epoch_in_which_every_streamed_file_fails_stops_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_images) -> None:  # noqa: ANN001
    root = tmp_path / "broken"
    for name, color in (("a", (200, 30, 30)), ("b", (30, 200, 30))):
        make_images(root / name, color, 12)
        for f in (root / name).glob("*.png"):  # a sound header, no pixels
            f.write_bytes(f.read_bytes()[:60])
    monkeypatch.setenv("DESCEND_MEMORY_BUDGET", "0")  # stream from the files
    with pytest.raises(DataError, match="no training image could be used"):
        train(_cfg(root, tmp_path / "run", batch_size=4))
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ")
def test_a_write_that_fails_keeps_the_previous_checkpoint(image_folder: Path,
                                                          tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_cfg(image_folder, run, epochs=1, schedule="constant"))
    before = (run / "last.pt").read_bytes()
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)); "
            "from descend.cli.main import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "train", "--resume", str(run),
                           "--epochs", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot write" in done.stderr and "last.pt" in done.stderr
    assert (run / "last.pt").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    time.sleep(0)
