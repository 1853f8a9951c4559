"""`descend.load(ckpt).predict(x)` sees exactly what training saw, whatever form x takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import descend
from descend.config import TrainConfig
from descend.data.batching import LoaderOptions
from descend.data.datasets import load_dataset
from descend.data.images import load_pixels
from descend.data.loader import make_loader
from descend.errors import DataError
from descend.evaluation.predict import Classifier, Prediction
from descend.models import ModelSpec, create_model
from descend.runtime.checkpoint import save_checkpoint
from descend.runtime.inference import predict_batches


@pytest.fixture(scope="module")
def clf(photo_run: Path) -> Classifier:
    return descend.load(photo_run / "best.pt", device="cpu")


def test_predict_replays_the_runs_decode_geometry(photo_run: Path, clf: Classifier) -> None:
    """Predicting the original files gives the pixels and logits of the run's own eval pass."""
    cfg = clf.loaded.checkpoint["config"]
    # trained with the 0.1 spelling, augment="resize:24,center-crop:16": moved to its settings
    assert (cfg["augment"], cfg["resize"], cfg["center_crop"]) == ("none", 24, 16)
    assert (clf.size, clf.resize) == ((16, 16), 24)
    splits = load_dataset(clf.loaded.checkpoint["data"], cache=cfg["cache_dir"],
                          options=TrainConfig.from_dict(cfg).data_options(progress=False))
    val = splits.val
    assert val.paths is not None and len(val) == 15
    pixels = torch.stack([clf.to_pixels(p) for p in val.paths])
    assert torch.equal(pixels, val.images)  # exactly what training decoded
    naive = torch.stack([torch.from_numpy(load_pixels(p, (16, 16))) for p in val.paths])
    assert not torch.equal(pixels, naive)  # the geometry matters: without it, other pixels

    options = LoaderOptions(1024, clf.loaded.mean, clf.loaded.std)
    eval_logits, _ = predict_batches(clf.loaded.model, make_loader(val, options),
                                     torch.device("cpu"))
    torch.testing.assert_close(clf.logits(pixels), eval_logits, rtol=1e-6, atol=1e-6)
    probs = clf.probabilities(list(val.paths))
    torch.testing.assert_close(probs, eval_logits.softmax(1), rtol=1e-6, atol=1e-6)
    preds = clf.predict([Path(p) for p in val.paths], top_k=1)
    assert [clf.classes.index(p.top[0][0]) for p in preds] == eval_logits.argmax(1).tolist()


def _inputs(files: dict[str, Path]) -> dict[str, tuple[str, object]]:
    """Input kind -> (the file it stands for, the input)."""
    rgb = np.array(Image.open(files["rgb"]))
    rgba = np.array(Image.open(files["rgba"]))
    grey = np.array(Image.open(files["grey"]))
    return {
        "str path": ("rgb", str(files["rgb"])),
        "Path": ("rgb", files["rgb"]),
        "bytes": ("rgb", files["rgb"].read_bytes()),
        "PIL RGB": ("rgb", Image.open(files["rgb"])),
        "PIL RGBA": ("rgba", Image.open(files["rgba"])),
        "PIL L": ("grey", Image.open(files["grey"])),
        "PIL LA": ("rgba", Image.open(files["rgba"]).convert("LA")),
        "uint8 HWC numpy": ("rgb", rgb),
        "uint8 CHW tensor": ("rgb", torch.from_numpy(rgb).permute(2, 0, 1)),
        "float CHW tensor": ("rgb", torch.from_numpy(rgb).permute(2, 0, 1).float() / 255),
        "float HWC numpy": ("rgb", rgb.astype(np.float32) / 255),
        "RGBA tensor": ("rgba", torch.from_numpy(rgba).permute(2, 0, 1)),
        "RGBA HWC numpy": ("rgba", rgba),
        "grey HW numpy": ("grey", grey),
        "grey 1HW tensor": ("grey", torch.from_numpy(grey)[None]),
    }


KINDS = ["str path", "Path", "bytes", "PIL RGB", "PIL RGBA", "PIL L", "PIL LA",
         "uint8 HWC numpy", "uint8 CHW tensor", "float CHW tensor", "float HWC numpy",
         "RGBA tensor", "RGBA HWC numpy", "grey HW numpy", "grey 1HW tensor"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_input_kind_predicts_like_its_file(kind: str, clf: Classifier,
                                                mode_files: dict[str, Path],
                                                tmp_path: Path) -> None:
    files = mode_files
    name, image = _inputs(files)[kind]
    expected = files[name] if kind != "PIL LA" else _saved(image, tmp_path / "la.png")
    assert torch.equal(clf.to_pixels(image), clf.to_pixels(expected))
    one = clf.predict(image, top_k=3)
    assert isinstance(one, Prediction)  # one image in, one prediction out
    [from_file] = clf.predict([expected], top_k=3)
    assert one.top == from_file.top
    [in_list] = clf.predict([image], top_k=3)
    assert in_list.top == from_file.top


def _saved(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def test_transparency_is_composited_on_white_not_read_as_a_colour(
        clf: Classifier, mode_files: dict[str, Path]) -> None:
    files = mode_files
    rgba = torch.from_numpy(np.array(Image.open(files["rgba"]))).permute(2, 0, 1)
    pixels = clf.to_pixels(rgba)
    assert pixels[:, 0, 0].tolist() == [255, 255, 255]  # a transparent corner is white
    assert pixels[:, 8, 8].tolist() != [255, 255, 255]  # the opaque middle keeps its colour
    assert not torch.equal(pixels[0], pixels[1])  # not one channel three times


def test_lists_tuples_and_batches_give_lists(clf: Classifier,
                                             mode_files: dict[str, Path]) -> None:
    files = mode_files
    rgb = torch.from_numpy(np.array(Image.open(files["rgb"]))).permute(2, 0, 1)
    batch = torch.stack([rgb, rgb.flip(2)])
    single = clf.predict(files["rgb"])
    for many in ([files["rgb"], str(files["grey"])], (files["rgb"], files["grey"]), batch):
        out = clf.predict(many, top_k=2)
        assert isinstance(out, list) and len(out) == 2
        # the same classes; the probabilities to float rounding (a batch of 2 and a batch of 1
        # may take different kernels)
        assert [c for c, _ in out[0].top] == [c for c, _ in single.top[:2]]
        assert [p for _, p in out[0].top] == pytest.approx([p for _, p in single.top[:2]],
                                                           abs=1e-6)
    assert clf.predict([]) == []
    assert clf.predict(str(files["rgb"])).source == str(files["rgb"])  # one path, not letters
    assert clf.probabilities(files["rgb"]).shape == (1, 3)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 8, 8) * 2 - 1, "float image must hold values in [0, 1]"),
    (torch.zeros(5, 8, 9, dtype=torch.uint8), "needs 1, 2, 3 or 4 channels"),
    (np.full((8, 8, 3), 300, dtype=np.int32), "must be uint8 (0-255) or float (0-1)"),
    (torch.zeros(2, 2, 3, 8, 8), "must be (H, W), (C, H, W) or (H, W, C)"),
])
def test_arrays_that_are_not_images_are_refused_with_a_reason(bad: object, message: str,
                                                              clf: Classifier) -> None:
    with pytest.raises(DataError) as e:
        clf.predict(bad)
    assert message in str(e.value)


def test_a_one_channel_model_sees_colour_inputs_in_grey(mode_files: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """A grey model (as MNIST trains) gets RGB, RGBA and grey inputs as one luminance channel,
    the way the image folder decoder converts them (``channels=1``)."""
    spec = ModelSpec("mlp", 3, 1, (16, 16))
    torch.manual_seed(0)
    path = tmp_path / "grey.pt"
    save_checkpoint(path, {"model": spec.to_dict(), "state_dict": create_model(spec).state_dict(),
                           "classes": ["a", "b", "c"], "data": "mnist",
                           "normalization": {"mean": [0.5], "std": [0.25]},
                           "config": {"augment": "resize:24,center-crop:16", "image_size": 16}})
    grey = descend.load(path, device="cpu")
    files = mode_files
    expected = torch.from_numpy(load_pixels(files["rgb"], (16, 16), 1, resize=24))
    rgb = np.array(Image.open(files["rgb"]))
    for image in (files["rgb"], Image.open(files["rgb"]), rgb,
                  torch.from_numpy(rgb).permute(2, 0, 1)):
        assert torch.equal(grey.to_pixels(image), expected)
    rgba_file = torch.from_numpy(load_pixels(files["rgba"], (16, 16), 1, resize=24))
    assert torch.equal(grey.to_pixels(np.array(Image.open(files["rgba"]))), rgba_file)
    assert grey.predict(rgb).top[0][0] in ["a", "b", "c"]


def test_center_crop_alone_replays_the_datasets_own_resize(photo_run: Path,
                                                           tmp_path: Path) -> None:
    """``center-crop:16`` alone crops images scaled to the dataset's size (64 for a folder)."""
    data = photo_run.parent / "data"
    result = descend.train(data=f"imagefolder:{data}", model="mlp", epochs=1, batch_size=8,
                           center_crop=16, progress=False, device="cpu",
                           out=str(tmp_path / "run"))
    clf = descend.load(result.run_dir / "best.pt", device="cpu")
    assert clf.resize == 64
    file = next((data / "val" / "red").glob("*.png"))
    assert torch.equal(clf.to_pixels(file),
                       torch.from_numpy(load_pixels(file, (16, 16), resize=64)))
