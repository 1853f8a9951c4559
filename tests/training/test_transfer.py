"""Small folders with the defaults, and transfer learning: --init, --weights, --pretrained,
--freeze-epochs. All offline: torchvision's weights come from a planted hub cache."""

from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file

from descend.config import TrainConfig
from descend.errors import ConfigError
from descend.runtime.checkpoint import read_checkpoint
from descend.training.fitting.callbacks import Callback
from descend.training.fitting.run import Run
from descend.training.trainer import train

CNN = {"widths": [4, 8, 8]}


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=f"imagefolder:{data}", epochs=1, image_size=16, out=str(out),
                progress=False, download=False, lr=0.05)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def two_classes(tmp_path: Path, make_images) -> Path:  # noqa: ANN001
    root = tmp_path / "two"
    make_images(root / "cyan", (40, 220, 220), 20, seed=5)
    make_images(root / "yellow", (230, 220, 40), 20, seed=6)
    return root


def test_a_small_folder_trains_with_the_default_batch_size(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(_cfg(image_folder, tmp_path / "run", model="mlp", lr=None))
    assert "batch size 8 for 48 training images (the default 256 would give 0 full batches" \
        in capsys.readouterr().out
    config = read_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert (config["batch_size"], config["lr"]) == (8, 0.2 * 8 / 256)  # the linear scaling rule
    with pytest.raises(ConfigError, match="batch size 64 is larger than the 48 training images"):
        train(_cfg(image_folder, tmp_path / "explicit", model="mlp", batch_size=64))


def test_init_keeps_the_backbone_and_makes_a_new_head(
        image_folder: Path, two_classes: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    train(_cfg(image_folder, tmp_path / "a", model="cnn", model_args=CNN))
    source = read_checkpoint(tmp_path / "a" / "best.pt")
    capsys.readouterr()
    train(_cfg(two_classes, tmp_path / "b", init=str(tmp_path / "a"), epochs=1, lr=1e-9))
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("initialised from"))
    b = read_checkpoint(tmp_path / "b" / "best.pt")
    assert b["model"]["name"] == "cnn" and b["model"]["kwargs"] == CNN  # the run's model
    assert b["normalization"] == source["normalization"]
    new = [k for k in b["state_dict"] if source["state_dict"][k].shape != b["state_dict"][k].shape]
    assert new and all(k in line for k in new if not k.endswith("num_batches_tracked"))
    assert "kept" in line and b["model"]["num_classes"] == 2
    first = next(k for k in b["state_dict"] if k.endswith("weight"))
    assert torch.allclose(b["state_dict"][first], source["state_dict"][first], atol=1e-4)


class Snapshots(Callback):
    """The model's parameters at the end of every epoch."""

    def __init__(self) -> None:
        self.params: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, run: Run) -> None:
        self.params.append({k: v.detach().clone() for k, v in run.model.named_parameters()})


def test_freeze_epochs_train_the_head_first(image_folder: Path, two_classes: Path,
                                            tmp_path: Path) -> None:
    train(_cfg(image_folder, tmp_path / "a", model="cnn", model_args=CNN))
    source = read_checkpoint(tmp_path / "a" / "best.pt")["state_dict"]
    seen = Snapshots()
    train(_cfg(two_classes, tmp_path / "b", init=str(tmp_path / "a"), freeze_epochs=1,
               epochs=2, schedule="constant"), callbacks=[seen])
    head = read_checkpoint(tmp_path / "b" / "last.pt")["freeze"]["head"]
    assert head == ["head.2.weight", "head.2.bias"]
    first, second = seen.params
    backbone = [k for k in first if k not in head]
    assert all(torch.equal(first[k], source[k]) for k in backbone)  # frozen in epoch 1
    assert not torch.equal(first["head.2.weight"], second["head.2.weight"])
    assert sum(not torch.equal(first[k], second[k]) for k in backbone) > len(backbone) // 2


def test_backbone_lr_scale_slows_the_loaded_layers_alone(image_folder: Path, two_classes: Path,
                                                          tmp_path: Path) -> None:
    train(_cfg(image_folder, tmp_path / "a", model="cnn", model_args=CNN))
    seen = Snapshots()
    train(_cfg(two_classes, tmp_path / "b", init=str(tmp_path / "a"), epochs=1,
               schedule="constant", backbone_lr_scale=0.1), callbacks=[seen])
    groups = read_checkpoint(tmp_path / "b" / "last.pt")["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.05, 0.005])  # head first, at --lr
    assert len(groups[0]["params"]) == 2  # head.2.weight and head.2.bias
    with pytest.raises(ConfigError, match="--backbone-lr-scale slows .* add --init"):
        TrainConfig(backbone_lr_scale=0.1).validate()
    with pytest.raises(ConfigError, match="muon chooses its own parameter groups"):
        train(_cfg(two_classes, tmp_path / "c", init=str(tmp_path / "a"), optimizer="muon",
                   backbone_lr_scale=0.1))


def test_partner_lr_scale_sets_the_rate_of_muons_partner(image_folder: Path,
                                                          tmp_path: Path) -> None:
    train(_cfg(image_folder, tmp_path / "a", model="cnn", model_args=CNN, epochs=1,
               optimizer="muon", schedule="constant", lr=0.02, partner_lr_scale=5))
    groups = read_checkpoint(tmp_path / "a" / "last.pt")["optimizer"]["param_groups"]
    assert [(g["muon"], g["lr"]) for g in groups] == [(True, 0.02), (False, pytest.approx(0.1))]
    with pytest.raises(ConfigError, match="--optimizer nesterov has none: add --optimizer muon"):
        TrainConfig(partner_lr_scale=5).validate()


def test_freeze_epochs_need_weights_from_elsewhere() -> None:
    with pytest.raises(ConfigError, match="--freeze-epochs .* add --init"):
        TrainConfig(freeze_epochs=1).validate()
    with pytest.raises(ConfigError, match="--pretrained starts from ImageNet weights: add "
                       "--model efficientnet_lite0"):
        TrainConfig(pretrained=True, model="cnn").validate()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_for_a_torchvision_model(image_folder: Path, tmp_path: Path,
                                              suffix: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    state = tvm.get_model("squeezenet1_1", num_classes=1000).state_dict()
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    train(_cfg(image_folder, tmp_path / "run", model="tv:squeezenet1_1", weights=str(path),
               image_size=32, batch_size=16, lr=1e-3, optimizer="adam"))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("initialised"))
    assert "new: model.classifier.1.weight, model.classifier.1.bias" in line
    ckpt = read_checkpoint(tmp_path / "run" / "best.pt")
    key = "model.features.0.weight"
    assert ckpt["state_dict"][key].shape == state["features.0.weight"].shape


def test_weights_file_that_is_not_weights(image_folder: Path, tmp_path: Path) -> None:
    bad = tmp_path / "w.pth"
    bad.write_text("not a tensor file")
    with pytest.raises(ConfigError, match="cannot be read as weights"):
        train(_cfg(image_folder, tmp_path / "run", model="mlp", weights=str(bad)))


def test_pretrained_from_the_hub_cache(image_folder: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    weights = tvm.get_model_weights("squeezenet1_1").DEFAULT
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.save(tvm.get_model("squeezenet1_1", num_classes=1000).state_dict(), cached)
    train(_cfg(image_folder, tmp_path / "run", model="tv:squeezenet1_1", pretrained=True,
               image_size=None, batch_size=16, lr=1e-3, optimizer="adam"))
    assert "initialised from torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1" in \
        capsys.readouterr().out
    ckpt = read_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["normalization"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert ckpt["model"]["image_size"] == [224, 224]  # photos train at the weights' size


def test_pretrained_without_cache_or_network_says_where_to_put_the_file(
        image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a closed port: no network, at once
    with pytest.raises(ConfigError, match=r"put it at .*torch/hub/checkpoints/squeezenet1_1-"):
        train(_cfg(image_folder, tmp_path / "run", model="tv:squeezenet1_1", pretrained=True))


def test_other_classes_of_the_same_count_get_a_new_head(
        image_folder: Path, tmp_path: Path, make_images,  # noqa: ANN001
        capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    for k, (name, color) in enumerate({"cyan": (40, 220, 220), "yellow": (230, 220, 40),
                                       "pink": (230, 60, 200)}.items()):
        make_images(other / name, color, 20, seed=30 + k)
    train(_cfg(image_folder, tmp_path / "a", model="cnn", model_args=CNN))
    train(_cfg(other, tmp_path / "b", init=str(tmp_path / "a")))
    train(_cfg(image_folder, tmp_path / "c", init=str(tmp_path / "a"), freeze_epochs=1))
    lines = [x for x in capsys.readouterr().out.splitlines()
             if x.startswith(("initialised", "--freeze-epochs"))]
    assert "new: head.2.weight, head.2.bias" in lines[0]  # three classes, but not these three
    assert "nothing new (the classes fit)" in lines[1]
    assert lines[2].startswith("--freeze-epochs: no new head")


def test_fastres_whitening_bias_stops_training_after_its_epochs(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"widths": [4, 8, 8]}
    for epochs, out in ((1, "a"), (None, "b")):
        seen = Snapshots()
        train(_cfg(image_folder, tmp_path / out, model="fastres", epochs=2, schedule="constant",
                   model_args={**args, "whiten_bias_epochs": epochs}), callbacks=[seen])
        first, second = seen.params
        assert not torch.equal(first["groups.0.conv1.weight"], second["groups.0.conv1.weight"])
        assert torch.equal(first["whiten.bias"], second["whiten.bias"]) == (epochs == 1)
    assert "the whitening bias stops training after 1 epoch(s)" in capsys.readouterr().out


def test_freeze_epochs_leave_the_models_own_fixed_weights_fixed(
        image_folder: Path, two_classes: Path, tmp_path: Path) -> None:
    args = {"widths": [4, 8, 8]}
    train(_cfg(image_folder, tmp_path / "a", model="fastres", model_args=args))
    seen = Snapshots()
    train(_cfg(two_classes, tmp_path / "b", init=str(tmp_path / "a"), freeze_epochs=1,
               epochs=2, schedule="constant"), callbacks=[seen])
    first, second = seen.params
    # fastres's whitening filters and batch-norm scales are fixed by design: unfreezing the
    # backbone after --freeze-epochs gives back the weights the model trains, not these
    assert torch.equal(first["whiten.weight"], second["whiten.weight"])
    assert torch.equal(first["groups.0.bn1.weight"], second["groups.0.bn1.weight"])
    assert not torch.equal(first["groups.0.conv1.weight"], second["groups.0.conv1.weight"])
