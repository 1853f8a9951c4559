"""``descend data info`` and ``descend data preview`` through their argument parser."""

import argparse
import json
from pathlib import Path

import pytest
from PIL import Image

from descend.cli import data as data_cli
from descend.errors import ConfigError
from descend.models import DEFAULT_MODEL, recipe_for


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    return data_cli.run(parser.parse_args(["data", *argv]))


def test_info_counts_sizes_stats_and_duplicates(image_folder: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    red = image_folder / "red"
    (red / "copy.png").write_bytes((red / "img_000.png").read_bytes())  # an exact duplicate
    assert _run("info", f"imagefolder:{image_folder}", "--image-size", "16", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["blue", "green", "red"]
    assert report["splits"] == {"train": 49, "val": 12}
    assert [sum(x) for x in zip(*report["counts"].values())] == [20, 20, 21]
    assert report["source_sizes"] == {"width": [16, 16, 16], "height": [16, 16, 16]}
    assert len(report["mean"]) == 3 and all(0 < s < 1 for s in report["std"])
    dup = report["problems"]["duplicates"]
    assert dup["groups"] == 1 and dup["extra_copies"] == 1
    assert report["problems"]["skipped"] == [] and report["problems"]["imbalance"] is None


def test_info_text_flags_imbalance(tmp_path: Path, make_images,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    make_images(tmp_path / "d" / "many", (200, 0, 0), 30)
    make_images(tmp_path / "d" / "few", (0, 200, 0), 5, seed=1)
    assert _run("info", f"imagefolder:{tmp_path / 'd'}", "--image-size", "16") == 0
    out = capsys.readouterr().out
    assert "class imbalance: 'many' has 24 training images, 'few' 4 (6.0x)" in out
    assert "few" in out and "total" in out and "mean (" in out


def test_preview_writes_a_grid_png(image_folder: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["preview", f"imagefolder:{image_folder}", "--image-size", "16", "--augment",
            "random-resized-crop:0.3:1,hflip,color-jitter,cutout:4", "--n", "12",
            "--out", str(tmp_path)]
    assert _run(*argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote preview.png to {tmp_path}"
    with Image.open(tmp_path / "preview.png") as im:
        assert im.format == "PNG" and im.size[0] > 200
    with pytest.raises(ConfigError, match="already holds preview.png"):
        _run(*argv)
    assert _run(*argv, "--overwrite", "--json") == 0
    printed = capsys.readouterr()
    shown = json.loads(printed.out)
    assert shown["samples"] == len(shown["labels"]) == 12 and shown["shape"] == [3, 16, 16]
    assert printed.err.splitlines()[-1] == f"wrote preview.png to {tmp_path}"


def test_preview_shows_what_a_default_run_trains_with(
        image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run("preview", f"imagefolder:{image_folder}", "--image-size", "16", "--n", "4",
                "--json") == 0
    assert json.loads(capsys.readouterr().out)["augment"] == recipe_for(DEFAULT_MODEL).augment
    (run,) = (tmp_path / "runs").iterdir()  # not the working directory
    assert run.name.startswith("data-preview-") and (run / "preview.png").is_file()


def test_preview_of_a_streamed_dataset(image_folder: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DESCEND_MEMORY_BUDGET", "0")
    out = tmp_path / "grid.png"  # 0.x's spelling: the file itself
    assert _run("preview", f"imagefolder:{image_folder}", "--image-size", "16", "--n", "4",
                "--out", str(out), "--no-progress") == 0
    assert out.is_file() and "note: --out FILE.png is deprecated" in capsys.readouterr().err
