from pathlib import Path

import torch

from descend.evaluation.evaluate import confusion_matrix, per_class
from descend.evaluation.predict import expand_inputs


def test_confusion_matrix_and_per_class_figures() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 1, 1, 2, 2])
    m = confusion_matrix(labels, preds, 3)
    assert m.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    rows = per_class(m, ["a", "b", "c"])
    assert rows[0] == {"class": "a", "precision": 1.0, "recall": 2 / 3, "support": 3}
    assert rows[1]["precision"] == 0.5 and rows[2]["recall"] == 1.0


def test_expand_inputs_files_folders_globs(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.png", "d/sub/b.JPG", "d/notes.txt", "d/.hidden.png", "c.webp"):
        (tmp_path / name).write_bytes(b"x")
    files, errors = expand_inputs([str(tmp_path / "d"), str(tmp_path / "*.webp"),
                                   str(tmp_path / "none*.png"), str(tmp_path / "gone.png")])
    assert [f.name for f in files] == ["a.png", "b.JPG", "c.webp"]
    assert [e["error"] for e in errors] == ["pattern matches no file", "no such file or folder"]
