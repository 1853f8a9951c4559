"""`descend eval` ranks its mistakes by loss (fastai's top losses), in the report and the grid."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import descend
from descend.evaluation.evaluate import TOP_LOSSES, top_losses


def test_top_losses_are_the_mistakes_highest_loss_first() -> None:
    labels = torch.tensor([0, 1, 2, 0, 1])
    logits = torch.tensor([[5.0, 0, 0],   # right
                           [3.0, 1, 0],   # wrong, loss ~2.1
                           [0.0, 9, 0],   # wrong, loss ~9
                           [0.0, 0, 1],   # wrong, loss ~1.6
                           [0.0, 4, 0]])  # right
    assert top_losses(logits, labels).tolist() == [2, 1, 3]
    assert top_losses(logits, labels, n=2).tolist() == [2, 1]
    assert top_losses(logits[[0, 4]], labels[[0, 4]]).tolist() == []


def test_top_losses_keep_the_worst_forty() -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 4, generator=g), torch.randint(0, 4, (500,), generator=g)
    top = top_losses(logits, labels)
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    wrong = logits.argmax(1) != labels
    assert len(top) == TOP_LOSSES == 40 and bool(wrong[top].all())
    assert torch.equal(losses[top], losses[wrong].sort(descending=True).values[:40])


def test_eval_report_lists_the_top_losses_worst_first(photo_run: Path, tmp_path: Path) -> None:
    report = descend.evaluate(photo_run / "best.pt", out_dir=tmp_path / "eval", device="cpu",
                              progress=False)
    rows = report["top_losses"]
    matrix = torch.tensor(report["confusion_matrix"])
    assert len(rows) == int(matrix.sum() - matrix.diag().sum()) >= 3
    assert [r["loss"] for r in rows] == sorted((r["loss"] for r in rows), reverse=True)
    # the red photos filed under green and blue are confident mistakes
    wrong = {Path(r["path"]).name: (r["true"], r["predicted"]) for r in rows}
    assert {wrong.get(f"wrong_{i}.png") for i in range(2)} <= {("green", "red"), ("blue", "red")}
    assert Path(report["files"]["misclassified"]).is_file()

    # the same numbers as predicting the file
    clf = descend.load(photo_run / "best.pt", device="cpu")
    for r in rows:
        assert Path(r["path"]).parent.name == r["true"] and r["predicted"] != r["true"]
        probs = clf.probabilities(r["path"])[0]
        assert r["probability"] == pytest.approx(probs.max().item(), abs=1e-5)
        assert clf.classes[int(probs.argmax())] == r["predicted"]
        p_true = probs[clf.classes.index(r["true"])].item()
        assert r["loss"] == pytest.approx(-math.log(p_true), rel=1e-4, abs=1e-5)


def test_a_run_folder_is_evaluated_into_its_own_eval_folder(photo_run: Path,
                                                              tmp_path: Path) -> None:
    """`descend eval runs/NAME` writes runs/NAME/eval-SPLIT, as `descend eval
    runs/NAME/best.pt` does, not runs/eval-SPLIT beside every other run."""
    import shutil

    run = shutil.copytree(photo_run, tmp_path / "runs" / "one")
    report = descend.evaluate(run, device="cpu", progress=False, explain=False)
    assert Path(report["files"]["misclassified"]).parent == run / f"eval-{report['split']}"
    assert not (tmp_path / "runs" / f"eval-{report['split']}").exists()


def test_a_streamed_split_ranks_and_draws_the_same_mistakes(
        photo_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = descend.evaluate(photo_run / "best.pt", out_dir=tmp_path / "memory", device="cpu",
                            progress=False)
    monkeypatch.setenv("DESCEND_MEMORY_BUDGET", "1")  # too small to decode: stream the files
    streamed = descend.evaluate(photo_run / "best.pt", out_dir=tmp_path / "streamed",
                                device="cpu", progress=False)
    assert [(r["path"], r["true"], r["predicted"]) for r in streamed["top_losses"]] == \
        [(r["path"], r["true"], r["predicted"]) for r in kept["top_losses"]]
    assert Path(streamed["files"]["misclassified"]).is_file()
