from pathlib import Path

import pytest

from descend.config import TrainConfig, read_config_file
from descend.errors import ConfigError


@pytest.mark.parametrize("changes, flag", [
    ({"lr": -0.1}, "--lr"), ({"lr": float("nan")}, "--lr"), ({"epochs": 0}, "--epochs"),
    ({"batch_size": 0}, "--batch-size"), ({"weight_decay": -1.0}, "--weight-decay"),
    ({"val_fraction": 1.5}, "--val-fraction"), ({"monitor": "acc"}, "--monitor"),
    ({"momentum": 1.0}, "--momentum"), ({"device": "tpu"}, "--device"),
    ({"step_size": 0}, "--step-size"), ({"gamma": float("nan")}, "--gamma"),
    ({"schedule": "plateau", "gamma": 1.0}, "--gamma 1.0 would not decay"),
    ({"milestones": [0, 5]}, "--milestones"), ({"mean": [0.5, 0.5, 0.5]}, "--mean and --std"),
    ({"plateau_patience": 0}, "--plateau-patience"),
])
def test_invalid_numbers_name_the_option(changes: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        TrainConfig(**changes).validate()


def test_defaults_are_valid() -> None:
    assert TrainConfig().validate().model is None  # cnn, unless --init names another


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


@pytest.mark.parametrize("name, text", [
    ("c.yaml", "lr: 1e-3\nweight_decay: 5e-4\nepochs: 8.0\nmean: 0.5,0.5,0.5\ndrop_last: 'no'\n"
               "std: [0.2, 0.2, 0.2]\n"),
    ("c.json", '{"lr": "1e-3", "weight_decay": 5e-4, "epochs": 8.0, "mean": [0.5, 0.5, 0.5],'
               ' "drop_last": false, "std": "0.2,0.2,0.2"}'),
    ("c.toml", 'lr = "1e-3"\nweight_decay = 5e-4\nepochs = 8.0\nmean = "0.5,0.5,0.5"\n'
               'drop_last = false\nstd = [0.2, 0.2, 0.2]\n'),
])
def test_file_values_are_converted_like_flags(tmp_path: Path, name: str, text: str) -> None:
    """YAML reads 5e-4 as text; a whole float fills a whole-number setting."""
    path = tmp_path / name
    path.write_text(text)
    cfg = TrainConfig.from_dict(read_config_file(path)).validate()
    assert (cfg.lr, cfg.weight_decay, cfg.epochs, cfg.mean, cfg.drop_last) == (
        1e-3, 5e-4, 8, [0.5, 0.5, 0.5], False)
    assert isinstance(cfg.epochs, int)


@pytest.mark.parametrize("values, message", [
    ({"epochs": 8.5}, "--epochs must be a whole number, got 8.5"),
    ({"lr": "fast"}, "--lr must be a number, got 'fast'"),
    ({"lr": True}, "--lr must be a number"),
    ({"milestones": "5,x"}, "--milestones must be a comma-separated list of whole numbers"),
    ({"model": 3}, "--model must be text"),
    ({"amp": "maybe"}, "--amp must be true or false"),
    ({"model_args": [1, 2]}, "--model-arg must be a table"),
])
def test_values_that_cannot_be_converted_name_the_setting(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="c.yaml: " + message.replace("[", r"\[")):
        TrainConfig.from_dict(values, source="c.yaml")


def test_none_is_allowed_only_where_the_default_is_none() -> None:
    assert TrainConfig.from_dict({"image_size": None}).image_size is None
    assert TrainConfig.from_dict({"epochs": None}).epochs is None  # the plan sizes the run
    with pytest.raises(ConfigError, match="--momentum"):
        TrainConfig.from_dict({"momentum": None})


@pytest.mark.parametrize("values, message", [
    ({"epochs": -1}, "--epochs must be 0 or more, got -1"),
    ({"lr": -1.0}, "--lr must be a positive number, got -1.0"),
    ({"momentum": 1.0}, r"--momentum must be in \[0, 1\), got 1.0"),
    ({"label_smoothing": -0.1}, r"--label-smoothing must be in \[0, 1\)"),
    ({"early_stop": -2}, "--early-stop must be 0 or more, got -2"),
    ({"image_size": 4}, "--image-size must be at least 8, got 4"),
    ({"center_crop": 2}, "--center-crop must be at least 8, got 2"),
    ({"milestones": [5, 0]}, r"--milestones must be at least 1, got \[5, 0\]"),
    ({"std": [0.2, 0.0, 0.2]}, "--std must be a positive number"),
    ({"val_every": -1}, "--val-every must be 0 or more"),
    ({"monitor": "train_acc"}, "--monitor must be one of val_acc, val_loss, got 'train_acc'"),
    ({"image_size": 30.5}, "--image-size must be a whole number, got 30.5"),
])
def test_each_setting_is_checked_against_what_its_declaration_admits(values: dict,
                                                                     message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values).validate()


def test_every_number_setting_declares_what_it_admits() -> None:
    """A new number setting comes with its `Bounds`: the constraint lives beside it."""
    import dataclasses

    from descend.config import field_types

    free = {"seed", "mean"}  # any seed is a seed, any mean a mean
    for f in dataclasses.fields(TrainConfig):
        kind = field_types()[f.name]
        if kind in (int, float) or kind in (list[int], list[float]):
            if f.name in free:
                continue
            assert f.metadata.get("bounds") is not None, f.name


def test_the_01_spelling_of_the_decode_geometry_moves_to_its_settings() -> None:
    cfg = TrainConfig(augment="resize:40,center-crop:32,hflip")
    assert (cfg.augment, cfg.resize, cfg.center_crop) == ("hflip", 40, 32)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # saved and read back: the same
    options = cfg.data_options(progress=False)
    assert (options.geometry.resize, options.geometry.center_crop, options.progress) == (
        40, 32, False)
    assert TrainConfig(augment="resize:40", resize=40).resize == 40  # the same value twice
    with pytest.raises(ConfigError, match="--resize 48 disagrees with resize:40 in --augment"):
        TrainConfig(augment="resize:40", resize=48)
