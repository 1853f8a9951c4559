"""``descend data info`` and ``descend data preview`` through their argument parser."""

import argparse
import json
from pathlib import Path

import pytest
from PIL import Image

from descend.cli import data as data_cli


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
    out = tmp_path / "grid.png"
    assert _run("preview", f"imagefolder:{image_folder}", "--image-size", "16", "--augment",
                "random-resized-crop:0.3:1,hflip,color-jitter,cutout:4", "--n", "12",
                "--out", str(out)) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_preview_of_a_streamed_dataset(image_folder: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCEND_MEMORY_BUDGET", "0")
    out = tmp_path / "grid.png"
    assert _run("preview", f"imagefolder:{image_folder}", "--image-size", "16", "--n", "4",
                "--out", str(out)) == 0
    assert out.is_file()
