"""The flags of `descend train` and `descend optim compare` come from TrainConfig's fields."""

import dataclasses

import pytest

from descend.cli.main import build_parser, main
from descend.config import TrainConfig, flag_name


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_every_setting_is_a_train_flag_with_its_one_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "train")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        assert flag_name(f.name) in text, f.name
    assert "L2 (AdamW and Muon decouple it) (default: the model's recipe: 0.00025 for " \
           "fastres" in text  # a recipe's value, model by model
    assert f"(default: {defaults.momentum})" in text
    assert "epochs to train (--time-budget plans them instead) (default: 8, or for a small " \
           "dataset" in text
    assert "training batch size; an explicit one the data cannot fill is an error (default: " \
           "256 (large enough" in text  # a None default says what it means
    assert "P x batch size / 256" in text and "--no-drop-last" in text
    assert "(default: 10,15)" in text  # milestones, a list


def test_compare_shows_its_own_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "optim", "compare")
    assert "--batch-size BATCH_SIZE training batch size" in text
    assert "(default: 128)" in text and "(default: mnist)" in text
    assert "--optimizer NAMES an optimizer by name, or several" in text  # lr-find's and paths'
    assert "(default: sgd,momentum,nesterov,adagrad,rmsprop,adam)" in text
    assert "--overwrite write over the files" in text


def test_flags_parse_to_the_field_types() -> None:
    args = build_parser().parse_args(["train", "--lr", "1e-3", "--milestones", "3,6", "--mean",
                                      "0.5,0.4,0.3", "--model-arg", "widths=[8,16]",
                                      "--no-amp", "--epochs", "2"])
    assert (args.lr, args.milestones, args.mean, args.model_args, args.amp, args.epochs) == (
        1e-3, [3, 6], [0.5, 0.4, 0.3], [("widths", [8, 16])], False, 2)
    assert not hasattr(args, "batch_size")  # not given: left for a config file or the default


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "2.5"], "argument --epochs: must be a whole number, got '2.5'"),
    (["--milestones", "a"], "argument --milestones: must be a comma-separated list"),
])
def test_bad_flag_values_are_usage_errors(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
