"""`descend gd`, `descend optim paths` and `descend optim compare` from the command line."""

from pathlib import Path

import pytest
from PIL import Image

from descend.cli.main import main


def test_gd_makes_the_seeds_update_counts(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gd", "--out", str(tmp_path / "gd.png")]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert (rows["BGD"][2], rows["SGD"][2], rows["MBGD"][2]) == ("20", "20000", "640")
    assert (tmp_path / "gd.png").stat().st_size > 10_000


def test_optim_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optim", "paths", "--steps", "50", "--functions", "quadratic,saddle",
                 "--optimizers", "sgd,adam", "--out", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert out.count("quadratic") == 2 and (tmp_path / "p.png").is_file()
    assert main(["optim", "paths", "--optimizers", "lion"]) == 2


def test_optim_compare_on_a_small_folder(image_folder: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    assert main(["optim", "compare", "--data", f"imagefolder:{image_folder}", "--model", "mlp",
                 "--epochs", "2", "--batch-size", "8", "--optimizers", "sgd,adam",
                 "--out", str(out), "--no-progress"]) == 0
    table = (out / "compare.txt").read_text()
    assert "sgd" in table and "adam" in table
    assert (out / "compare.png").is_file() and (out / "adam" / "best.pt").is_file()
    assert "lr-find" not in capsys.readouterr().out
    # --lr-find: a sweep per optimizer, drawn as a third panel (a wider page)
    assert main(["optim", "compare", "--data", f"imagefolder:{image_folder}", "--model", "mlp",
                 "--epochs", "2", "--batch-size", "8", "--optimizers", "sgd,adam",
                 "--out", str(out), "--no-progress", "--lr-find",
                 "--plot", str(tmp_path / "with_lr_find.png")]) == 0
    printed = capsys.readouterr().out
    assert "lr-find sgd: " in printed and "lr-find adam: " in printed
    with Image.open(out / "compare.png") as two, \
            Image.open(tmp_path / "with_lr_find.png") as three:
        assert three.width > 1.2 * two.width
    assert main(["optim", "compare", "--optimizers", "sgd,lion", "--out", str(out)]) == 2
    assert "unknown optimizer 'lion'" in capsys.readouterr().err
