"""A checkpoint is checked before anything is built from it.

Each bad checkpoint is a real one, written by a tiny run, with one part removed or edited, saved
with `save_checkpoint` (so that it loads: a zip with descend's format key). `descend eval`,
`descend predict`, ``--init`` and ``--resume`` must each refuse it with one `CheckpointError`
line, before the model is built and before any image is decoded at the size it asks for: the
peak memory of the process may not grow by more than 200 MB while they do.
"""

from __future__ import annotations

import resource
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import descend
from descend.cli.main import main
from descend.errors import CheckpointError
from descend.runtime.checkpoint import read_checkpoint, save_checkpoint
from tests.conftest import COLORS, write_class_images

CNN = {"widths": [4, 8, 8]}  # a cnn's weights do not depend on the image size; an mlp's would
PEAK_GROWTH = 200 << 20  # bytes of peak memory a refused checkpoint may cost
Edit = Callable[[dict[str, Any]], object]


def _model(**change: object) -> Edit:
    return lambda ckpt: ckpt["model"].update(change)


def _norm(**change: object) -> Edit:
    return lambda ckpt: ckpt["normalization"].update(change)


def _config(**change: object) -> Edit:
    return lambda ckpt: ckpt["config"].update(change)


# name: (edit of a good checkpoint, what the one line must say)
CASES: dict[str, tuple[Edit, str]] = {
    **{f"no {key}": ((lambda ckpt, key=key: ckpt.pop(key)), f"has no {key!r}")
       for key in ("model", "state_dict", "normalization", "config", "classes")},
    "a class too many": (lambda ckpt: ckpt["classes"].append("purple"),
                         "names 4 classes but its model predicts 3"),
    "a class too few": (lambda ckpt: ckpt["classes"].pop(),
                        "names 2 classes but its model predicts 3"),
    "one mean for three channels": (_norm(mean=[0.5]),
                                    "normalization mean has 1 values but the model takes "
                                    "3-channel images"),
    "four stds for three channels": (_norm(std=[0.2] * 4), "normalization std has 4 values"),
    "a zero std": (_norm(std=[0.2, 0.0, 0.2]), "has a value that is not positive"),
    "a text mean": (_norm(mean=["red", 0.5, 0.5]), "normalization mean is ['red', 0.5, 0.5]"),
    "100000 x 100000 images": (_model(image_size=[100_000, 100_000]),
                               "image height is 100000, not a whole number from 1 to 4,096"),
    "a trillion classes": (_model(num_classes=10**12),
                           "num_classes is 1000000000000, not a whole number from 1 to 100,000"),
    "negative channels": (_model(in_channels=-3), "in_channels is -3"),
    "a negative side": (_model(image_size=[16, -16]), "image width is -16"),
    "a text side": (_model(image_size=["big", 16]), "image height is 'big'"),
    "a fractional side": (_model(image_size=[16.5, 16]), "image height is 16.5"),
    "classes as text": (_model(num_classes="3"), "num_classes is '3'"),
    "one side": (_model(image_size=[16]), "image_size is [16], not [height, width]"),
    # In range, so only the weights can tell: built for real, these layers are gigabytes.
    "a layer of two million channels": (_model(kwargs={"widths": [4, 8, 2_000_000]}),
                                        "the weights do not fit the model 'cnn'"),
    "an unknown model": (_model(name="nonesuch"), "the model it describes cannot be built"),
    "a config image size of 100000": (_config(image_size=100_000),
                                      "the config's image_size is 100000"),
    # --resume builds the config's model, not the model description's
    "config model arguments of two million channels": (
        _config(model_args={"widths": [4, 8, 2_000_000]}),
        "the config's model_args {'widths': [4, 8, 2000000]} is not the model's own"),
    "a dataset that is a number": (lambda ckpt: ckpt.update(data=7), "'data' is 7"),
    "a huge decode resize": (lambda ckpt: ckpt.update(geometry={"size": [16, 16],
                                                               "resize": 10**9}),
                             "the decode geometry's resize is 1000000000"),
}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch cnn on three colour classes: the source of every bad checkpoint."""
    root = tmp_path_factory.mktemp("good")
    for k, (name, color) in enumerate(COLORS.items()):
        write_class_images(root / "colors" / name, color, 12, seed=k)
    result = descend.train(data=f"imagefolder:{root / 'colors'}", model="cnn", model_args=CNN,
                           epochs=1, schedule="constant", batch_size=8, image_size=16,
                           progress=False, device="cpu",
                           out=str(root / "run"), cache_dir=str(root / "cache"))
    return result.run_dir


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_checkpoint_is_one_line_everywhere(case: str, good_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    edit, message = CASES[case]
    ckpt = read_checkpoint(good_run / "last.pt")
    edit(ckpt)
    run = tmp_path / "run"  # a run folder whose last.pt is the bad one, for --resume
    shutil.copytree(good_run, run)
    bad = run / "last.pt"
    save_checkpoint(bad, ckpt)
    image = next((good_run.parent / "colors" / "red").iterdir())
    capsys.readouterr()
    before = _peak()

    assert main(["eval", str(bad), "--out", str(tmp_path / "eval")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"descend: error: {bad}") and message in line, line

    assert main(["predict", str(bad), str(image)]) == 2
    assert message in _one_line(capsys.readouterr().err)

    with pytest.raises(CheckpointError, match="^--init: ") as init:
        descend.train(data=f"imagefolder:{good_run.parent / 'colors'}", init=str(bad),
                      epochs=1, progress=False, device="cpu", out=str(tmp_path / "new"))
    assert message in str(init.value) and "\n" not in str(init.value)
    new = tmp_path / "new"  # refused before anything of the run was written (a lock at most)
    assert not [f for f in new.glob("*") if not f.name.startswith(".")] if new.exists() else True

    with pytest.raises(CheckpointError) as resume:
        descend.train(resume=run, progress=False)
    assert message in str(resume.value) and "\n" not in str(resume.value)

    assert _peak() - before < PEAK_GROWTH, f"peak memory grew by {(_peak() - before) >> 20} MB"


def test_a_good_checkpoint_still_loads_evaluates_and_resumes(good_run: Path,
                                                             tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    clf = descend.load(run / "best.pt")
    assert clf.classes == ["blue", "green", "red"]
    assert descend.evaluate(run, out_dir=tmp_path / "eval", progress=False)["images"] > 0
    result = descend.train(resume=run, epochs=2, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_a_model_that_cannot_be_built_on_meta_is_checked_for_real() -> None:
    from descend.models import ModelSpec, create_model
    from descend.runtime.checkpoint import _shapes

    spec = ModelSpec("tv:regnet_y_400mf", 10, 3, (32, 32))  # reads its own init values
    expected = {k: v.shape for k, v in create_model(spec).state_dict().items()}
    assert _shapes(spec) == expected
