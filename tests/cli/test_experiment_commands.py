"""`descend gd`, `descend optim paths` and `descend optim compare` from the command line."""

import json
from pathlib import Path

import pytest
from PIL import Image

from descend.cli.main import main


def test_gd_makes_the_seeds_update_counts(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gd", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert (rows["BGD"][2], rows["SGD"][2], rows["MBGD"][2]) == ("20", "20000", "640")
    assert (tmp_path / "gd.png").stat().st_size > 10_000
    assert out.splitlines()[-1] == f"wrote gd.png to {tmp_path}"


def test_gd_refuses_to_overwrite_and_prints_json(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["gd", "--epochs", "2", "--samples", "64", "--out", str(tmp_path)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert "already holds gd.png" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--json"]) == 0
    printed = capsys.readouterr()
    modes = json.loads(printed.out)  # the document alone on stdout
    assert [m["mode"] for m in modes] == ["BGD", "SGD", "MBGD"]
    assert modes[1]["updates"] == 128 and len(modes[0]["weights"]) == 10
    assert printed.err.splitlines()[-1] == f"wrote gd.png to {tmp_path}"


def test_gd_default_folder_and_old_file_spelling(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["gd", "--epochs", "1", "--samples", "32"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("gd-") and (run / "gd.png").is_file()
    assert not (tmp_path / "gd.png").exists()  # never the working directory
    capsys.readouterr()
    for _ in range(2):  # 0.x's --out FILE.png writes that file, over an earlier one
        assert main(["gd", "--epochs", "1", "--samples", "32", "--out", "old.png"]) == 0
    assert (tmp_path / "old.png").is_file()
    assert "note: --out FILE.png is deprecated" in capsys.readouterr().err


def test_optim_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optim", "paths", "--steps", "50", "--functions", "quadratic,saddle",
                 "--optimizer", "sgd,adam", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("quadratic") == 2 and (tmp_path / "paths.png").is_file()
    assert out.splitlines()[-1] == f"wrote paths.png to {tmp_path}"
    assert main(["optim", "paths", "--optimizer", "lion"]) == 2
    assert "unknown optimizer 'lion'" in capsys.readouterr().err
    # the old spelling, with its note; --json
    assert main(["optim", "paths", "--steps", "20", "--functions", "saddle", "--optimizers",
                 "adam", "--out", str(tmp_path), "--overwrite", "--json"]) == 0
    printed = capsys.readouterr()
    (result,) = json.loads(printed.out)
    assert (result["optimizer"], result["steps"], result["distance_to_minimum"]) == (
        "adam", 20, None)
    assert "note: --optimizers is deprecated" in printed.err


def test_optim_compare_on_a_small_folder(image_folder: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    common = ["optim", "compare", "--data", f"imagefolder:{image_folder}", "--model", "mlp",
              "--epochs", "2", "--batch-size", "8", "--optimizer", "sgd,adam", "--out", str(out),
              "--no-progress"]
    assert main(common) == 0
    table = (out / "compare.txt").read_text()
    assert "sgd" in table and "adam" in table
    assert (out / "compare.png").is_file() and (out / "adam" / "best.pt").is_file()
    printed = capsys.readouterr().out
    assert "lr-find" not in printed
    assert printed.splitlines()[-1] == f"wrote compare.txt, compare.png, sgd/, adam/ to {out}"
    assert main(common) == 2  # an earlier comparison is there
    assert "add --overwrite" in capsys.readouterr().err
    # --lr-find: a sweep per optimizer, drawn as a third panel (a wider page); the old --plot
    assert main([*common, "--overwrite", "--lr-find",
                 "--plot", str(tmp_path / "with_lr_find.png")]) == 0
    printed = capsys.readouterr().out
    assert "lr-find sgd: " in printed and "lr-find adam: " in printed
    with Image.open(out / "compare.png") as two, \
            Image.open(tmp_path / "with_lr_find.png") as three:
        assert three.width > 1.2 * two.width
    assert main(["optim", "compare", "--optimizer", "sgd,lion", "--out", str(out)]) == 2
    assert "unknown optimizer 'lion'" in capsys.readouterr().err


def test_optim_compare_json_and_old_spelling(image_folder: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    assert main(["optim", "compare", "--data", f"imagefolder:{image_folder}", "--model", "mlp",
                 "--epochs", "1", "--batch-size", "8", "--optimizers", "sgd", "--out", str(out),
                 "--no-progress", "--json"]) == 0
    printed = capsys.readouterr()
    (run,) = json.loads(printed.out)
    assert run["optimizer"] == "sgd" and run["error"] is None and len(run["epochs"]) == 1
    assert "note: --optimizers is deprecated" in printed.err and "epoch   1/" in printed.err
    assert printed.err.splitlines()[-1] == f"wrote compare.txt, compare.png, sgd/ to {out}"


def test_optim_compare_trains_muon_with_its_partner(image_folder: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`--optimizer muon` in a comparison builds Muon from the model: the conv filters on
    Muon, the biases, norms and the classifier head on Nesterov (issue 28)."""
    import torch

    from descend.optim import compare_lr

    out = tmp_path / "cmp"
    assert main(["optim", "compare", "--data", f"imagefolder:{image_folder}", "--model", "cnn",
                 "--epochs", "1", "--batch-size", "8", "--optimizer", "nesterov,muon",
                 "--out", str(out), "--no-progress", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["optimizer"], r["error"]) for r in runs] == [("nesterov", None), ("muon", None)]
    assert runs[1]["lr"] == compare_lr("muon") and len(runs[1]["epochs"]) == 1
    ckpt = torch.load(out / "muon" / "last.pt", map_location="cpu", weights_only=True)
    filters = [k for k, v in ckpt["state_dict"].items() if v.ndim == 4]
    groups = {g["muon"]: g["params"] for g in ckpt["optimizer"]["param_groups"]}
    assert len(groups[True]) == len(filters) == 7  # the cnn's convs; its head is linear
    assert "head.2.weight" in ckpt["state_dict"] and len(groups[False]) > 0
