"""A folder of photos starts from ImageNet: the photo default, the head on cached features
(`descend.training.fitting.features`), fine-tuning after it, and the audit's heads."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import descend
from descend.config import TrainConfig
from descend.errors import ConfigError
from descend.models.efficientnet_lite import installed
from descend.training.fitting import features
from descend.training.planning.photos import photo_default

needs_weights = pytest.mark.skipif(not installed(), reason="descend[pretrained] (timm, the "
                                   "weights packages) is not installed")


def test_the_folded_head_gives_the_logits_of_the_standardised_fit() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g) * torch.tensor([1.0, 10, 0.1, 3, 1]) + 4
    y = (x[:, 0] + x[:, 1] / 10 > 4).long()
    head = features.fit_linear(x, y, 2, strength=1e-3)
    assert (head.logits(x).argmax(1) == y).float().mean() > 0.95
    layer = torch.nn.Linear(5, 2)
    head.load_into(layer)
    torch.testing.assert_close(layer(x), head.logits(x))


def test_a_stronger_penalty_gives_smaller_weights() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 3, generator=g), torch.arange(40) % 2
    weak, strong = (features.fit_linear(x, y, 2, s) for s in (1e-3, 10.0))
    assert strong.weight.norm() < weak.weight.norm()


def test_folds_keep_an_images_views_together_and_share_out_each_class() -> None:
    groups = torch.arange(30).repeat_interleave(2)
    labels = (groups % 3 == 0).long()
    assignment = features.folds(groups, labels, 5, seed=0)
    assert all(assignment[2 * i] == assignment[2 * i + 1] for i in range(30))
    for fold in range(5):
        held = labels[assignment == fold][::2]
        assert held.sum() == 2 and len(held) == 6  # 10 of class 1 and 20 of class 0, in 5


def test_cross_validation_chooses_a_strength_of_the_grid() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 4, generator=g)
    data = features.Features(x, (x[:, 0] > 0).long(), torch.arange(40))
    strength, accuracy = features.choose_strength(data, 2)
    assert strength in features.STRENGTHS and set(accuracy) == set(features.STRENGTHS)
    assert accuracy[strength] > 0.8


def test_epochs_zero_is_for_the_cached_head_alone() -> None:
    with pytest.raises(ConfigError, match="--epochs 0"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(ConfigError, match="--cached-head fits a new head"):
        TrainConfig(cached_head=True).validate()
    TrainConfig(model="efficientnet_lite0", pretrained=True, epochs=0).validate()
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        TrainConfig(model="fastres", pretrained=True).validate()


def test_tiny_images_keep_fastres(image_folder: Path) -> None:
    cfg = TrainConfig(data=f"imagefolder:{image_folder}")
    assert photo_default(cfg) == (cfg, None)


@needs_weights
def test_photos_start_from_imagenet(photo_folder: Path) -> None:
    cfg, note = photo_default(TrainConfig(data=f"imagefolder:{photo_folder}"))
    assert (cfg.model, cfg.pretrained) == ("efficientnet_lite2", True)
    assert note is not None and "median shorter side 128 px" in note
    named = TrainConfig(data=f"imagefolder:{photo_folder}", model="fastres")
    assert photo_default(named) == (named, None)  # a model named is the user's choice


@needs_weights
def test_flags_that_need_starting_weights_accept_the_photo_default(photo_folder: Path) -> None:
    from descend.training.planning.resolve import resolve

    request = resolve(None, None, {"data": f"imagefolder:{photo_folder}", "epochs": 1,
                                   "backbone_lr_scale": 0.1, "freeze_epochs": 1})
    assert (request.cfg.model, request.cfg.backbone_lr_scale) == ("efficientnet_lite2", 0.1)
    with pytest.raises(ConfigError, match="--backbone-lr-scale slows"):
        resolve(None, None, {"data": f"imagefolder:{photo_folder}", "model": "fastres",
                             "backbone_lr_scale": 0.1})


def test_without_the_extra_one_line_names_it(photo_folder: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("descend.training.planning.photos.installed", lambda: False)
    cfg = TrainConfig(data=f"imagefolder:{photo_folder}")
    unchanged, note = photo_default(cfg)
    assert unchanged == cfg
    assert note is not None and "pip install 'descend[pretrained]'" in note


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@needs_weights
def test_the_head_alone_is_an_ordinary_checkpoint(photo_folder: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    result = descend.train(data=f"imagefolder:{photo_folder}", model="efficientnet_lite0",
                           pretrained=True, out=str(tmp_path / "run"), progress=False)
    log = capsys.readouterr().out
    assert "head fitted on cached features of 40 training images" in log
    assert "the head alone on cached features (--epochs 0)" in log
    rows = metrics(result.run_dir)
    assert len(rows) == 1 and float(rows[0]["val_acc"]) >= 0.8  # airplanes against frogs
    classifier = descend.load(result.run_dir / "best.pt", device="cpu")
    assert classifier.size == (224, 224) and classifier.resize == 256
    files = sorted((photo_folder / "val" / "frog").iterdir())[:4]
    assert sum(p.top[0][0] == "frog" for p in classifier.predict([str(f) for f in files])) >= 3
    # The checkpoint replays the head's validation: the same accuracy through predict's path.
    evaluated = descend.evaluate(result.run_dir / "best.pt", split="val", device="cpu")
    assert abs(evaluated["accuracy"] - float(rows[0]["val_acc"])) <= 1 / 16


@needs_weights
def test_fine_tuning_follows_the_head(photo_folder: Path, tmp_path: Path) -> None:
    result = descend.train(data=f"imagefolder:{photo_folder}", model="efficientnet_lite0",
                           pretrained=True, epochs=1, image_size=96, out=str(tmp_path / "run"),
                           progress=False)
    rows = metrics(result.run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["lr"]) == 0 and float(rows[1]["lr"]) > 0  # the head, then an epoch
    state = torch.load(result.run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2


@needs_weights
def test_the_audit_of_photos_uses_heads_on_imagenet_features(photo_folder: Path,
                                                             tmp_path: Path) -> None:
    import shutil

    from descend.audit import run_audit

    pytest.importorskip("cleanlab")
    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    wrong = sorted((folder / "train" / "frog").iterdir())[:2]
    for path in wrong:  # two frogs filed as airplanes
        path.rename(folder / "train" / "airplane" / path.name)
    lines: list[str] = []
    result = run_audit(TrainConfig(data=f"imagefolder:{folder}", progress=False),
                       log=lines.append)
    assert any("logistic-regression folds" in line for line in lines)
    assert result.report["method"]["folds"] == 10
    found = {s["path"] for s in result.report["suspects"] if s["kind"] == "label"}
    assert {f"train/airplane/{p.name}" for p in wrong} <= found


@needs_weights
def test_a_time_budget_runs_the_head_alone(photo_folder: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Fine-tuning did not pay on photos (B15), so a budget buys no fine-tuning and spends no
    time on probes of the backbone's steps."""
    result = descend.train(data=f"imagefolder:{photo_folder}", model="efficientnet_lite0",
                           pretrained=True, time_budget="1m", out=str(tmp_path / "run"),
                           progress=False)
    log = capsys.readouterr().out
    assert "time budget 1m: the head alone fits it" in log
    assert "a training step took" not in log  # no precision probe
    assert len(metrics(result.run_dir)) == 1
