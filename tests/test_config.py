from pathlib import Path

import pytest

from descend.config import TrainConfig, read_config_file
from descend.errors import ConfigError


@pytest.mark.parametrize("changes, flag", [
    ({"lr": -0.1}, "--lr"), ({"lr": float("nan")}, "--lr"), ({"epochs": 0}, "--epochs"),
    ({"batch_size": 0}, "--batch-size"), ({"weight_decay": -1.0}, "--weight-decay"),
    ({"val_fraction": 1.5}, "--val-fraction"), ({"monitor": "acc"}, "--monitor"),
    ({"momentum": 1.0}, "--momentum"), ({"device": "tpu"}, "--device"),
])
def test_invalid_numbers_name_the_option(changes: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        TrainConfig(**changes).validate()


def test_defaults_are_valid() -> None:
    assert TrainConfig().validate().model == "cnn"


@pytest.mark.parametrize("name, text", [
    ("c.toml", 'model = "mlp"\nlr = 0.05\nmodel-args = { dropout = 0.1 }\n'),
    ("c.yaml", "train:\n  model: mlp\n  lr: 0.05\n  model_args: {dropout: 0.1}\n"),
    ("c.json", '{"model": "mlp", "lr": 0.05, "model_args": {"dropout": 0.1}}'),
])
def test_config_files_fill_the_same_object(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    cfg = TrainConfig.from_dict(read_config_file(path))
    assert (cfg.model, cfg.lr, cfg.model_args) == ("mlp", 0.05, {"dropout": 0.1})


def test_unknown_setting_lists_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("learning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown setting.*learning_rate.*valid settings"):
        TrainConfig.from_dict(read_config_file(path), source=str(path))


def test_unparsable_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("model = \n")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        read_config_file(path)
