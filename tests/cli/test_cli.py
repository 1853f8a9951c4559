"""The command line as a user meets it: real argv, exit statuses and messages."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from descend.cli.main import main


@pytest.fixture
def trained(image_folder: Path, tmp_path: Path, train_args) -> Path:
    assert main(train_args(image_folder, tmp_path / "run", "--epochs", "3")) == 0
    return tmp_path / "run"


def test_train_eval_predict_round_trip(trained: Path, image_folder: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["eval", str(trained / "best.pt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == 1.0 and report["split"] == "val"
    assert [r["class"] for r in report["per_class"]] == ["blue", "green", "red"]
    assert sum(map(sum, report["confusion_matrix"])) == 12
    assert Path(report["files"]["confusion"]).is_file()
    assert main(["predict", str(trained / "best.pt"), str(image_folder / "red"), "--json",
                 "--top-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["predictions"]) == 20 and out["errors"] == []
    first = out["predictions"][0]["predictions"]
    assert first[0]["class"] == "red" and len(first) == 2
    assert first[0]["probability"] >= first[1]["probability"]


def test_eval_prints_a_table(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(trained), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "accuracy 1.0000" in out and "precision" in out and "red" in out
    # No mistakes: only the confusion matrix, in the run's own eval-val/.
    assert out.splitlines()[-1] == f"wrote confusion.png to {trained / 'eval-val'}"
    assert main(["eval", str(trained)]) == 2  # an earlier evaluation is not written over
    err = capsys.readouterr().err
    assert "already holds confusion.png from an earlier run" in err and "--overwrite" in err
    assert main(["eval", str(trained), "--overwrite", "--batch-size", "5"]) == 0


def test_predict_any_mode_and_size_and_reports_unreadable(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGBA", (300, 120), (230, 30, 30, 255)).save(imgs / "big.png")
    Image.new("L", (7, 9), 128).save(imgs / "grey.jpg")
    Image.new("P", (20, 20), 3).save(imgs / "pal.gif")
    Image.fromarray(np.full((20, 20), 30000, dtype=np.uint16)).save(imgs / "deep.png")
    (imgs / "fake.jpg").write_text("<html>not found</html>")
    capsys.readouterr()
    rc = main(["predict", str(trained / "best.pt"), str(imgs / "*.png"), str(imgs / "grey.jpg"),
               str(imgs / "pal.gif"), str(imgs / "fake.jpg"), str(tmp_path / "missing.png")])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.out.count("\n") == 4  # every readable image predicted
    assert "big.png: red" in captured.out
    assert "fake.jpg: ERROR not-an-image" in captured.err
    assert "missing.png: ERROR no such file" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "imagenet"], "unknown dataset 'imagenet'; choose one of: cifar10"),
    (["train", "--model", "vgg"], "unknown model 'vgg'; choose one of: "),
    (["train", "--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'; choose one of: adagrad"),
    (["train", "--schedule", "triangle"], "unknown schedule 'triangle'; choose one of: constant"),
    (["train", "--lr", "-1"], "--lr must be a positive number"),
    (["train", "--epochs", "0"], "--epochs 0 trains nothing: it is for --cached-head"),
    (["train", "--epochs", "-1"], "--epochs must be 0 or more"),
    (["train", "--resume", "/nonexistent/run"], "cannot resume /nonexistent/run"),
    (["train", "--config", "/nonexistent.toml"], "config file /nonexistent.toml does not exist"),
])
def test_bad_input_is_a_message_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--out", str(tmp_path / "run"), "--no-download", "--data-root", str(tmp_path)]
    assert main(argv + extra if argv[-1] != "/nonexistent/run" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_batch_larger_than_dataset(image_folder: Path, tmp_path: Path, train_args,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(train_args(image_folder, tmp_path / "r", "--batch-size", "100")) == 2
    assert "larger than the 48 training images" in capsys.readouterr().err


def test_one_class_imagefolder(tmp_path: Path, train_args, make_images,
                               capsys: pytest.CaptureFixture[str]) -> None:
    make_images(tmp_path / "one" / "cat", (1, 2, 3), 4)
    assert main(train_args(tmp_path / "one", tmp_path / "r")) == 2
    assert "needs at least 2 class folders" in capsys.readouterr().err


def test_output_folder_holding_a_run(trained: Path, image_folder: Path, train_args,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(train_args(image_folder, trained)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(train_args(image_folder, trained, "--overwrite")) == 0


@pytest.mark.parametrize("content", ["truncated", "text", "tensor", "mismatch"])
def test_bad_checkpoints(trained: Path, tmp_path: Path, content: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / f"{content}.pt"
    good = (trained / "best.pt").read_bytes()
    if content == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif content == "text":
        bad.write_text("hello")
    elif content == "tensor":
        torch.save(torch.zeros(3), bad)
    else:
        ckpt = torch.load(trained / "best.pt", weights_only=True)
        ckpt["model"].update(name="cnn", kwargs={})  # weights of an mlp under a cnn's name
        torch.save(ckpt, bad)
    assert main(["predict", str(bad), str(trained / "curves.png")]) == 2
    err = capsys.readouterr().err
    expected = {"truncated": "not a readable checkpoint", "text": "not a readable checkpoint",
                "tensor": "not a descend checkpoint", "mismatch": "do not fit the model 'cnn'"}
    assert expected[content] in err and "Traceback" not in err


def test_config_file_and_flags(image_folder: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: imagefolder:{image_folder}\nmodel: mlp\nepochs: 5\nbatch_size: 8\n"
                   "image_size: 16\nprogress: false\n")
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--out",
                 str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["model"] == "mlp"


def test_python_api_mirrors_the_commands(trained: Path, image_folder: Path) -> None:
    import descend

    clf = descend.load(trained / "best.pt")
    pil = Image.open(image_folder / "green" / "img_000.png")
    tensor = torch.from_numpy(np.array(pil)).permute(2, 0, 1)
    preds = clf.predict([pil, image_folder / "red" / "img_001.png", tensor], top_k=1)
    assert [p.top[0][0] for p in preds] == ["green", "red", "green"]
    report = descend.evaluate(trained / "best.pt")
    assert report["accuracy"] == 1.0
