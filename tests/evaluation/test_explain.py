"""Explanations that mean something: the heat map lies on the object that decides the class,
and it changes when the weights are randomised (Adebayo et al. 2018's model-parameter
randomisation test); ``descend predict --explain`` and ``descend eval`` draw them."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import descend
from descend.cli.main import main
from descend.evaluation.explain import (
    GRAD_CAM,
    INTEGRATED_GRADIENTS,
    Explainer,
    explanation_names,
    target_layer,
)
from descend.evaluation.predict import Classifier
from descend.models import ModelSpec, create_model

SIZE, QUARTER, SIDE = 32, 16, 8  # 32 px images, four 16 px quadrants, an 8 px object
OBJECTS = {"red": (230, 30, 30), "blue": (30, 30, 230)}
DISTRACTOR = (30, 200, 30)  # a green square in every image, of every class


def scene(colour: tuple[int, int, int] | None, rng: np.random.Generator
          ) -> tuple[np.ndarray, int, int]:
    """Grey noise with a green square in one quadrant and, unless ``colour`` is None, a square
    of ``colour`` in another: (pixels, the object's quadrant, the distractor's)."""
    pixels = rng.integers(60, 190, size=(SIZE, SIZE, 1)).repeat(3, axis=2).astype(np.uint8)
    obj, distractor = (int(q) for q in rng.permutation(4)[:2])
    for q, c in ((obj, colour), (distractor, DISTRACTOR)):
        if c is not None:
            y = (q // 2) * QUARTER + rng.integers(0, QUARTER - SIDE + 1)
            x = (q % 2) * QUARTER + rng.integers(0, QUARTER - SIDE + 1)
            pixels[y:y + SIDE, x:x + SIDE] = c
    return pixels, obj, distractor


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    """Three classes: a red object, a blue object, or none ("plain", so that neither coloured
    class is the other's default and each must find its object). Returns the folder and, per
    validation image, (object quadrant, distractor quadrant)."""
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    where: dict[str, tuple[int, int]] = {}
    for split, n in (("train", 96), ("val", 16)):
        for name in (*OBJECTS, "plain"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels, obj, distractor = scene(OBJECTS.get(name), rng)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
                where[str(folder / f"{i:03d}.png")] = (obj, distractor)
    return root, where


@pytest.fixture(scope="module", params=["cnn", "mlp"])
def scene_model(request: pytest.FixtureRequest, scenes: tuple[Path, dict[str, tuple[int, int]]],
                tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    """cnn (Grad-CAM) or mlp (Integrated Gradients) trained for seconds on the scenes."""
    root, _ = scenes
    small = {"widths": [8, 16, 32]} if request.param == "cnn" else {"hidden": [64]}
    run = descend.train(data=f"imagefolder:{root}", model=request.param, epochs=8, batch_size=32,
                        image_size=SIZE, augment="none", model_args=small, progress=False,
                        device="cpu", amp=False, threads=1,  # the same run on every machine
                        out=str(tmp_path_factory.mktemp("run") / "run"), overwrite=True)
    return descend.load(run.run_dir / "best.pt", device="cpu")


def _object_images(scenes: tuple[Path, dict[str, tuple[int, int]]]) -> list[Path]:
    root, _ = scenes
    return sorted(f for name in OBJECTS for f in (root / "val" / name).glob("*.png"))


def _quadrant_mass(heat: torch.Tensor) -> torch.Tensor:
    """The share of the map's mass in each quadrant, row by row: (4,)."""
    mass = heat.view(2, QUARTER, 2, QUARTER).sum((1, 3)).flatten()
    return mass / mass.sum().clamp(min=1e-12)


def test_the_heat_map_lies_on_the_object_that_decides_the_class(
        scene_model: Classifier, scenes: tuple[Path, dict[str, tuple[int, int]]]) -> None:
    files = _object_images(scenes)
    preds = scene_model.predict(files, top_k=1)
    assert np.mean([p.top[0][0] == Path(p.source).parent.name for p in preds]) >= 0.9
    heats = scene_model.explain(files)
    assert heats.shape == (len(files), SIZE, SIZE)
    assert float(heats.min()) >= 0 and torch.allclose(heats.flatten(1).amax(1), torch.ones(1))

    on_object, peak_on_object, beats_distractor = [], [], []
    for f, heat in zip(files, heats):
        obj, distractor = scenes[1][str(f)]
        share = _quadrant_mass(heat)
        on_object.append(float(share[obj]))
        peak_on_object.append(int(share.argmax()) == obj)
        beats_distractor.append(bool(share[obj] > share[distractor]))
    # chance is a quarter of the mass; the green square is in every class's images
    seen = (f"mass on the object {np.mean(on_object):.2f}, peak there {np.mean(peak_on_object)}"
            f", more than on the distractor {np.mean(beats_distractor)}")
    print(seen)
    assert np.mean(on_object) > 0.45, seen
    assert np.mean(peak_on_object) >= 0.9, seen
    assert np.mean(beats_distractor) >= 0.9, seen


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a flat tensor, ties sharing their mean rank (as Spearman's rho wants)."""
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return ((2 * ends - counts - 1) / 2)[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two maps; 0 where either is flat (it ranks nothing)."""
    ra, rb = _ranks(a.flatten()), _ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / norm if norm > 0 else 0.0


def test_the_map_changes_when_the_weights_are_randomised(
        scene_model: Classifier, scenes: tuple[Path, dict[str, tuple[int, int]]]) -> None:
    """Adebayo et al. 2018: a map that survives re-initialising the model's weights shows the
    image (edges), not what the model learned. Both explain the trained model's class."""
    files = _object_images(scenes)
    pixels = torch.stack([scene_model.to_pixels(f) for f in files])
    targets = torch.tensor([scene_model.classes.index(f.parent.name) for f in files])
    trained = Explainer(scene_model.loaded, scene_model.device).maps(pixels, targets)

    randomised = copy.copy(scene_model.loaded)
    randomised.model = copy.deepcopy(scene_model.loaded.model)
    torch.manual_seed(1)
    for module in randomised.model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    randomised.model.eval()
    random_maps = Explainer(randomised, scene_model.device).maps(pixels, targets)

    rho = [spearman(a, b) for a, b in zip(trained, random_maps)]
    print(f"Spearman rho trained / randomised: mean {np.mean(rho):.2f}, max {max(rho):.2f}")
    assert np.mean(rho) < 0.5
    # the same maps again: the test can tell alike from different
    again = Explainer(scene_model.loaded, scene_model.device).maps(pixels, targets)
    assert min(spearman(a, b) for a, b in zip(trained, again)) > 0.99


@pytest.mark.parametrize(("name", "size", "layer"), [
    ("fastres", 32, "groups.2.conv2"),  # 3 x 3 after the last pooling
    ("fastres", 16, "groups.2.conv1"),  # the last convolution sees 1 x 1: one before it
    ("cnn", 32, "blocks.2.4"),
    ("mlp", 16, None),
])
def test_the_target_layer_is_the_last_convolution_that_still_has_a_where(
        name: str, size: int, layer: str | None) -> None:
    model = create_model(ModelSpec(name, 3, 3, (size, size)))
    assert target_layer(model, (3, size, size)) == layer


def test_fastres_is_explained_without_its_test_time_augmentation() -> None:
    """The map is of the image as given; the model's tta comes back afterwards."""
    torch.manual_seed(0)
    spec = ModelSpec("fastres", 3, 3, (32, 32), {"tta": 2})
    model = create_model(spec).eval()
    loaded = descend.runtime.checkpoint.LoadedModel(model, spec, ["a", "b", "c"], [0.5] * 3,
                                                     [0.25] * 3, {})
    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 2, 0])
    explainer = Explainer(loaded, torch.device("cpu"))
    with_tta = explainer.maps(pixels, targets)
    assert model.tta == 2 and explainer.describe() == {"method": GRAD_CAM,
                                                       "layer": "groups.2.conv2"}
    model.tta = 0
    torch.testing.assert_close(with_tta, explainer.maps(pixels, targets))


def test_explanation_names_never_collide() -> None:
    assert explanation_names(["a/cat.jpg", "b/cat.jpg", "dog.png", "a/cat.png"]) == [
        "cat.explain.png", "cat-2.explain.png", "dog.explain.png", "cat-3.explain.png"]


def test_predict_explain_writes_a_png_per_image_into_the_run(
        photo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    val = photo_run.parent / "data" / "val"
    files = [str(f) for f in sorted(val.glob("*/photo_00[01].*"))]
    run = tmp_path / "run"  # a run of its own: the session's run folder stays as it was
    run.mkdir()
    shutil.copy(photo_run / "best.pt", run / "best.pt")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["predict", str(run / "best.pt"), *files, "--json", "--explain"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)["predictions"]
    assert [r["path"] for r in rows] == files
    names = [Path(r["explanation"]) for r in rows]
    assert all(n.parent == run / "explanations" for n in names)  # RUN/explanations by default
    assert not (tmp_path / "explanations").exists()  # never the working directory
    assert err.endswith(f"wrote {len(files)} heat maps to {run / 'explanations'}\n")
    assert len(set(names)) == len(files)  # photo_000 of each class: no overwrites
    for n in names:
        with Image.open(n) as im:  # the picture and its overlay, side by side, scaled up
            assert im.size[0] > 2 * im.size[1] - 16 and im.size[1] >= 192

    clf = descend.load(photo_run / "best.pt", device="cpu")
    assert Explainer(clf.loaded, clf.device).method == INTEGRATED_GRADIENTS  # an mlp


def test_predict_explain_writes_over_earlier_maps_only_with_overwrite(
        photo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = str(next((photo_run.parent / "data" / "val" / "red").glob("photo_*")))
    ckpt, out = str(photo_run / "best.pt"), tmp_path / "maps"
    assert main(["predict", ckpt, image, "--explain", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote 1 heat map to {out}"
    assert main(["predict", ckpt, image, "--explain", "--out", str(out)]) == 2
    assert "already holds photo_" in capsys.readouterr().err
    assert main(["predict", ckpt, image, "--explain", "--out", str(out), "--overwrite"]) == 0
    old = tmp_path / "old"
    assert main(["predict", ckpt, image, f"--explain={old}"]) == 0  # the old spelling
    assert "note: --explain " in capsys.readouterr().err and len(list(old.iterdir())) == 1
    assert main(["predict", ckpt, image, "--out", str(out)]) == 2  # --out alone writes nothing
    assert "add --explain" in capsys.readouterr().err


def test_predict_explain_refuses_an_image_as_its_folder(
        photo_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = next((photo_run.parent / "data" / "val" / "red").glob("photo_*"))
    assert main(["predict", str(photo_run / "best.pt"), "--explain", str(image), str(image)]) != 0
    assert "--explain takes no value" in capsys.readouterr().err


def test_eval_draws_the_mistakes_heat_maps(photo_run: Path, tmp_path: Path) -> None:
    report = descend.evaluate(photo_run / "best.pt", out_dir=tmp_path / "eval", device="cpu",
                              progress=False)
    assert Path(report["files"]["misclassified_explained"]).is_file()
    plain = descend.evaluate(photo_run / "best.pt", out_dir=tmp_path / "plain", device="cpu",
                             progress=False, explain=False)
    assert "misclassified_explained" not in plain["files"]
    assert not (tmp_path / "plain" / "misclassified-explained.png").exists()
