"""`descend audit`: out-of-sample folds, the findings, the report, the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("cleanlab", reason="descend audit needs the 'audit' extra (cleanlab)")

from descend.audit.findings import find_suspects, near_duplicates  # noqa: E402
from descend.audit.oos import fold_indices  # noqa: E402
from descend.cli.main import main  # noqa: E402
from descend.data.datasets import load_dataset  # noqa: E402


def test_folds_cover_every_image_once_with_each_class_spread_evenly() -> None:
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 5)
    parts = fold_indices(labels, 3, seed=0)
    everything = torch.cat(parts).sort().values
    assert torch.equal(everything, torch.arange(len(labels)))
    for c, n in ((0, 10), (1, 7), (2, 5)):
        per_fold = [int((labels[p] == c).sum()) for p in parts]
        assert sum(per_fold) == n and max(per_fold) - min(per_fold) <= 1
    assert all(torch.equal(a, b) for a, b in zip(parts, fold_indices(labels, 3, seed=0)))


def _probabilities(labels: np.ndarray, flipped: list[int], strays: list[int],
                   rng: np.random.Generator) -> torch.Tensor:
    """A good model's out-of-sample view: sure of the true class; spread thin on strays."""
    n, k = len(labels), int(labels.max()) + 1
    truth = labels.copy()
    truth[flipped] = (labels[flipped] + 1) % k
    p = rng.dirichlet(np.ones(k) * 0.3, size=n) * 0.15
    p[np.arange(n), truth] += 0.85
    p[strays] = rng.dirichlet(np.ones(k) * 50, size=len(strays))
    return torch.tensor(p / p.sum(1, keepdims=True))


def test_wrong_labels_and_strays_are_found_and_told_apart() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 100)
    flipped = list(range(0, 400, 20))  # 20 of 400 (5%)
    strays = list(range(7, 400, 40))  # 10
    probabilities = _probabilities(labels, flipped, strays, rng)
    suspects, noise, rule = find_suspects(torch.tensor(labels), probabilities)
    assert rule.judged
    wrong = {s.index for s in suspects if s.kind == "label"}
    outliers = {s.index for s in suspects if s.kind == "outlier"}
    assert wrong == set(flipped)
    assert outliers == set(strays)
    assert all(s.suggested == (labels[s.index] + 1) % 4 for s in suspects if s.kind == "label")
    assert [s.score for s in suspects] == sorted((s.score for s in suspects), reverse=True)
    assert 0.02 < noise < 0.12


def test_a_photo_torn_between_two_classes_is_not_a_stray() -> None:
    """The stray rule is a fixed level, not relative to the other images: a strong model's
    hard photos (between two or three classes) are not strays, however many; an even
    prediction is, however few."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 50)
    p = np.full((500, 10), 0.001)
    p[np.arange(500), labels] = 0.99
    hard = np.arange(0, 500, 4)  # a quarter: torn between their class and the next two
    for i in hard:
        p[i] = 0.002
        p[i, [labels[i], (labels[i] + 1) % 10, (labels[i] + 2) % 10]] = [0.4, 0.35, 0.234]
    p[[1, 2]] = rng.dirichlet(np.ones(10) * 100, size=2)  # two even ones
    p /= p.sum(1, keepdims=True)
    given = labels.copy()
    given[3::20] = (labels[3::20] + 5) % 10  # 5% wrong labels, as any folder has
    suspects, _, _ = find_suspects(torch.tensor(given), torch.tensor(p))
    assert {s.index for s in suspects if s.kind == "outlier"} == {1, 2}


def test_strays_are_not_judged_by_a_model_unsure_of_every_image() -> None:
    """Two classes and a weak model: every prediction near 50/50 (B13's two-class folder).
    Nothing is called a stray, and the rule says why; the wrong labels are still ranked."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(2), 150)
    right = rng.uniform(0.5, 0.7, size=300)
    p = np.where(labels == 0, right, 1 - right)
    wrong = rng.random(300) < 0.37  # a 63% model
    p[wrong] = 1 - p[wrong]
    probabilities = torch.tensor(np.stack([p, 1 - p], 1))
    suspects, _, rule = find_suspects(torch.tensor(labels), probabilities)
    assert not rule.judged and rule.median_evenness is not None and rule.median_evenness > 0.5
    assert all(s.kind == "label" for s in suspects)


def test_near_duplicates_are_pairs_across_splits_within_six_bits() -> None:
    hashes = np.array([0b0, 0b111, 0xFFFF_0000_0000_0000, 0b1, 0xFFFF], dtype=np.uint64)
    embeddings = torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator()
                                                           .manual_seed(0)), dim=1)
    splits = ["train", "val", "train", "train", "test"]
    found = {(d.a, d.b): d.hash_distance for d in near_duplicates(hashes, embeddings, splits)}
    # 0~1 (3 bits, train/val) and 1~3 (2 bits, val/train); 0~3 is within train; 4 is far
    assert found == {(0, 1): 3, (1, 3): 2}


@pytest.fixture
def faulty_folder(split_folder: Path) -> Path:
    """The split colour folder with a red image filed as blue and a val image copied into
    train."""
    shutil.move(split_folder / "train" / "red" / "img_003.png",
                split_folder / "train" / "blue" / "from_red.png")
    shutil.copy(split_folder / "val" / "green" / "img_001.png",
                split_folder / "train" / "green" / "copy_of_val.png")
    return split_folder


def test_the_command_finds_the_wrong_label_and_the_leak(faulty_folder: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    argv = ["audit", f"imagefolder:{faulty_folder}", "--model", "mlp", "--epochs", "6",
            "--device", "cpu", "--no-progress", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)  # stdout: the JSON alone, indented as every --json is
    assert out.startswith('{\n  "folder"')
    assert summary["suspects"]["label"] >= 1 and summary["duplicates"] >= 1
    folder = faulty_folder / ".descend-audit"
    assert err.endswith(f"wrote audit.json, suspects.png to {folder}\n")
    assert main(argv) == 2  # a second audit does not write over the first unasked
    assert "already holds audit.json, suspects.png" in capsys.readouterr().err
    report = json.loads((folder / "audit.json").read_text())
    assert report["classes"] == ["blue", "green", "red"]
    top = report["suspects"][0]
    assert (top["path"], top["given"], top["suggested"], top["kind"]) == (
        "train/blue/from_red.png", "blue", "red", "label")
    pairs = [{d["a"], d["b"]} for d in report["duplicates"]]
    assert {"train/green/copy_of_val.png", "val/green/img_001.png"} in pairs
    assert report["summary"]["images"] == 16 * 3 + 4 * 3 + 4 * 3 + 1
    assert (folder / "suspects.png").stat().st_size > 1000
    # the report folder and a review's _dropped/ folder are never read as classes
    (faulty_folder / "train" / "_dropped").mkdir()
    shutil.copy(faulty_folder / "train" / "red" / "img_000.png",
                faulty_folder / "train" / "_dropped")
    assert load_dataset(f"imagefolder:{faulty_folder}", progress=False).classes == [
        "blue", "green", "red"]


def test_train_says_when_the_folders_audit_has_findings_left_open(
        faulty_folder: Path, tmp_path: Path) -> None:
    from descend import train
    from descend.audit.decisions import AuditFolder, record_decision

    folder = faulty_folder / ".descend-audit"
    folder.mkdir()
    (folder / "audit.json").write_text(json.dumps({
        "format": 1, "data": f"imagefolder:{faulty_folder}", "root": str(faulty_folder),
        "classes": ["blue", "green", "red"],
        "suspects": [{"id": "s1", "path": "train/blue/from_red.png", "split": "train",
                      "given": "blue", "suggested": "red", "kind": "label", "score": 0.9}],
        "duplicates": [], "summary": {}}))

    def log_of(name: str) -> str:
        train(data=f"imagefolder:{faulty_folder}", model="mlp", epochs=1, progress=False,
              device="cpu", out=str(tmp_path / name))
        return (tmp_path / name / "train.log").read_text()

    assert ("note: the audit of this folder has 1 suspect(s) without a decision; review with "
            f"descend audit imagefolder:{faulty_folder} --review") in log_of("open")
    record_decision(AuditFolder.load(folder), "train/blue/from_red.png", "relabel", "red")
    assert "1 decision(s) of this folder's audit are not applied yet" in log_of("decided")
    from descend.audit.apply import apply_decisions

    apply_decisions(folder)
    assert "audit" not in log_of("applied")


def test_from_a_run_judges_the_images_its_validation_covers(split_folder: Path,
                                                             tmp_path: Path) -> None:
    from descend.audit import run_audit
    from descend.config import TrainConfig
    from descend.training.trainer import train

    shutil.move(split_folder / "val" / "green" / "img_002.png",
                split_folder / "val" / "red" / "from_green.png")
    result = train(data=f"imagefolder:{split_folder}", model="mlp", epochs=6, progress=False,
                   device="cpu", out=str(tmp_path / "run"))
    audit = run_audit(TrainConfig(data=f"imagefolder:{split_folder}", device="cpu"),
                      from_run=result.run_dir / "best.pt", log=lambda _: None)
    report = audit.report
    assert report["method"]["judged"] == 12  # the val split
    assert {s["split"] for s in report["suspects"]} == {"val"}
    top = report["suspects"][0]
    assert (top["path"], top["suggested"]) == ("val/red/from_green.png", "green")
