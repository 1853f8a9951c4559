"""What the command line prints: JSON alone on stdout, no progress frames without a terminal,
one line (not a traceback) for an operating-system or unexpected error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from descend.cli.main import _unexpected, main


def test_train_json_is_alone_on_stdout(image_folder: Path, tmp_path: Path, train_args) -> None:  # noqa: ANN001
    done = subprocess.run([sys.executable, "-m", "descend", *train_args(
        image_folder, tmp_path / "run"), "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # nothing else on stdout
    assert result["run_dir"] == str(tmp_path / "run")
    assert "epoch   1/" in done.stderr and "input pipeline" in done.stderr


def test_no_progress_frames_without_a_terminal(image_folder: Path, tmp_path: Path,
                                               train_args) -> None:  # noqa: ANN001
    argv = [a for a in train_args(image_folder, tmp_path / "run") if a != "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "descend", *argv, "--progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout + done.stderr
    assert "epoch   1/" in done.stdout


def test_a_file_that_cannot_be_written_is_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    assert main(["gd", "--out", str(tmp_path / "file" / "gd")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descend: error: ") and "file" in err and err.count("\n") == 1
    assert main(["gd", "--out", str(tmp_path / "file")]) == 2  # --out names a folder
    err = capsys.readouterr().err
    assert "is a file; --out names the folder" in err and err.count("\n") == 1


def test_an_unexpected_error_is_one_line_with_its_traceback_in_a_file(
        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        {}["missing"]
    except KeyError as e:
        assert _unexpected(e) == 3
    err = capsys.readouterr().err
    assert err.startswith("descend: internal error: KeyError") and err.count("\n") == 1
    log = Path(err.split("the traceback is in ")[1].split(",")[0])
    assert "Traceback" in log.read_text() and 'KeyError' in log.read_text()
    try:
        open("/nonexistent/x")
    except OSError as e:
        assert _unexpected(e) == 2
    assert "No such file or directory: /nonexistent/x (check the path" in capsys.readouterr().err


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes"),
    MemoryError("cannot allocate"),
])
def test_out_of_memory_is_a_user_error_with_what_to_lower(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        error: Exception) -> None:
    import descend.cli.gd as gd

    def run(args: object) -> int:
        raise error

    monkeypatch.setattr(gd, "run", run)
    assert main(["gd"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descend gd: error: out of memory") and "--batch-size" in err
    assert "internal error" not in err and err.count("\n") == 1


def test_ctrl_c_says_what_the_command_kept(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import descend.cli.gd as gd

    def run(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(gd, "run", run)
    assert main(["gd", "--debug"]) == 130  # --debug after the command is accepted too
    assert capsys.readouterr().err.strip() == "descend gd: interrupted."
