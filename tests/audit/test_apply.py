"""Decisions on an audit's findings (`descend.audit.decisions`), and carrying them out on the
files and taking them back (`descend.audit.apply`), on real folders in a temporary directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from descend.audit.apply import JOURNAL_FILE, apply_decisions, read_journal, undo
from descend.audit.decisions import (
    AuditFolder,
    Decision,
    forget_decision,
    read_decisions,
    record_decision,
    unresolved,
)
from descend.errors import ConfigError, DataError
from tests.audit.conftest import files, folders, write_png


def decide(audit_dir: Path, *decisions: tuple[str, str, str | None]) -> AuditFolder:
    found = AuditFolder.load(audit_dir)
    for path, action, to in decisions:
        record_decision(found, path, action, to)
    return found


# -- decisions ---------------------------------------------------------------------------------

def test_a_decision_is_written_at_once_and_read_back(split_audit: Path) -> None:
    found = AuditFolder.load(split_audit)
    assert found.root == split_audit.parent and found.audit.classes == ("cat", "dog", "bird")
    assert read_decisions(split_audit) == {}
    record_decision(found, "train/cat/cat_1.png", "relabel", "dog")
    record_decision(found, "train/dog/dog_2.png", "drop")
    record_decision(found, "train/dog/dog_2.png", "keep")  # a second thought replaces the first
    doc = json.loads((split_audit / "decisions.json").read_text())
    assert doc == {"format": 1, "decisions": {
        "train/cat/cat_1.png": {"action": "relabel", "to": "dog"},
        "train/dog/dog_2.png": {"action": "keep"}}}
    assert read_decisions(split_audit) == {"train/cat/cat_1.png": Decision("relabel", "dog"),
                                           "train/dog/dog_2.png": Decision("keep")}
    assert sorted(p.name for p in split_audit.iterdir()) == ["audit.json", "decisions.json"]
    assert forget_decision(found, "train/dog/dog_2.png")
    assert not forget_decision(found, "train/dog/dog_2.png")
    assert list(read_decisions(split_audit)) == ["train/cat/cat_1.png"]


@pytest.mark.parametrize("path, action, to, message", [
    ("train/cat/cat_2.png", "drop", None, "not among the audit's suspects or duplicates"),
    ("../outside.png", "drop", None, "not among the audit's suspects"),
    ("train/cat/cat_1.png", "delete", None, "unknown action 'delete'"),
    ("train/cat/cat_1.png", "relabel", "horse", "not a class of this dataset; use one of cat"),
    ("train/cat/cat_1.png", "relabel", None, "not a class of this dataset"),
    ("train/cat/cat_1.png", "relabel", "cat", "already in class cat: use keep"),
    ("train/cat/cat_1.png", "drop", "dog", "drop takes no class"),
])
def test_a_decision_that_cannot_be_made_is_refused_and_not_written(
        split_audit: Path, path: str, action: str, to: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        decide(split_audit, (path, action, to))
    assert not (split_audit / "decisions.json").exists()


def test_the_sides_of_a_duplicate_pair_can_be_decided_on(split_audit: Path) -> None:
    decide(split_audit, ("val/cat/cat_v1.png", "drop", None),
           ("train/cat/cat_0.png", "relabel", "bird"))
    assert read_decisions(split_audit)["val/cat/cat_v1.png"] == Decision("drop")


def test_unresolved_lists_the_findings_without_a_decision(split_audit: Path) -> None:
    found = decide(split_audit, ("train/cat/cat_1.png", "keep", None))
    left = unresolved(found.audit, read_decisions(split_audit))
    assert [s.id for s in left.suspects] == ["s2", "s3", "s4"]
    assert [d.id for d in left.duplicates] == ["d1"]
    record_decision(found, "val/cat/cat_v1.png", "drop")  # one side decides the pair
    assert unresolved(found.audit, read_decisions(split_audit)).duplicates == ()


def test_a_missing_damaged_or_foreign_audit_or_decisions_file_is_a_clear_error(
        tmp_path: Path, split_audit: Path) -> None:
    with pytest.raises(DataError, match="no audit in .*: run `descend audit imagefolder:PATH`"):
        AuditFolder.load(tmp_path / "nowhere")
    (split_audit / "decisions.json").write_text("{not json")
    with pytest.raises(DataError, match="decisions.json .*fix or delete it"):
        read_decisions(split_audit)
    (split_audit / "decisions.json").write_text('{"format": 9, "decisions": {}}')
    with pytest.raises(DataError, match="not a format-1 decisions file"):
        read_decisions(split_audit)
    doc = json.loads((split_audit / "audit.json").read_text())
    doc["suspects"][0]["path"] = "../../etc/passwd"
    (split_audit / "audit.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="not a path inside the dataset"):
        AuditFolder.load(split_audit)
    del doc["classes"]
    (split_audit / "audit.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="is damaged .*run `descend audit` again"):
        AuditFolder.load(split_audit)


def test_a_failed_write_leaves_the_decisions_as_they_were(split_audit: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    audit = decide(split_audit, ("train/cat/cat_1.png", "keep", None))
    before = (split_audit / "decisions.json").read_bytes()
    split_audit.chmod(0o500)
    try:
        with pytest.raises(DataError, match="cannot write"):
            record_decision(audit, "train/dog/dog_2.png", "drop")
    finally:
        split_audit.chmod(0o700)
    assert (split_audit / "decisions.json").read_bytes() == before
    assert sorted(p.name for p in split_audit.iterdir()) == ["audit.json", "decisions.json"]


# -- apply and undo ----------------------------------------------------------------------------

def test_apply_relabels_and_drops_in_the_split_layout_and_undo_restores_the_tree(
        split_audit: Path) -> None:
    root = split_audit.parent
    original, original_folders = files(root), folders(root)
    decide(split_audit, ("train/cat/cat_1.png", "relabel", "dog"),
           ("train/dog/dog_2.png", "drop", None),
           ("val/bird/bird_v0.png", "relabel", "cat"),
           ("train/bird/bird_3.png", "keep", None))

    result = apply_decisions(split_audit)
    assert [(m.source, m.target) for m in result.moved] == [
        ("train/cat/cat_1.png", "train/dog/cat_1.png"),
        ("train/dog/dog_2.png", "_dropped/train/dog/dog_2.png"),
        ("val/bird/bird_v0.png", "val/cat/bird_v0.png")]
    assert result.kept == 1 and result.missing == [] and result.conflicts == []
    assert str(result).splitlines()[:2] == ["moved 3 files, 0 moved before, 1 kept",
                                            "  train/cat/cat_1.png -> train/dog/cat_1.png"]
    now = files(root)
    assert now["train/dog/cat_1.png"] == original["train/cat/cat_1.png"]
    assert now["_dropped/train/dog/dog_2.png"] == original["train/dog/dog_2.png"]
    assert now["val/cat/bird_v0.png"] == original["val/bird/bird_v0.png"]
    assert "train/cat/cat_1.png" not in now and len(now) == len(original)  # moved, not copied
    assert [(m["from"], m["to"]) for m in json.loads(
        (split_audit / JOURNAL_FILE).read_text())["moves"]] == \
        [(m.source, m.target) for m in result.moved]

    back = undo(split_audit)
    assert [m.source for m in back.restored] == ["val/bird/bird_v0.png", "train/dog/dog_2.png",
                                                 "train/cat/cat_1.png"]  # the last first
    assert files(root) == original and folders(root) == original_folders  # no _dropped left
    assert not (split_audit / JOURNAL_FILE).exists()
    assert len(read_decisions(split_audit)) == 4  # the decisions stay: apply redoes them
    assert len(apply_decisions(split_audit).moved) == 3


def test_apply_in_the_flat_layout_moves_between_class_folders(flat_audit: Path) -> None:
    root = flat_audit.parent
    original = files(root)
    decide(flat_audit, ("cat/cat_1.png", "relabel", "dog"), ("dog/dog_2.png", "drop", None),
           ("bird/bird_0.png", "drop", None))  # a duplicate's side
    result = apply_decisions(flat_audit)
    assert sorted(m.target for m in result.moved) == [
        "_dropped/bird/bird_0.png", "_dropped/dog/dog_2.png", "dog/cat_1.png"]
    assert files(root)["dog/cat_1.png"] == original["cat/cat_1.png"]
    undo(flat_audit)
    assert files(root) == original


def test_a_name_taken_gets_a_suffix_and_nothing_is_overwritten(split_audit: Path) -> None:
    root = split_audit.parent
    write_png(root / "train" / "dog" / "cat_1.png", (0, 0, 0), seed=1)  # already a cat_1 there
    write_png(root / "train" / "dog" / "cat_1-1.png", (0, 0, 0), seed=2)
    original = files(root)
    decide(split_audit, ("train/cat/cat_1.png", "relabel", "dog"))
    [move] = apply_decisions(split_audit).moved
    assert move.target == "train/dog/cat_1-2.png"
    assert files(root)["train/dog/cat_1-2.png"] == original["train/cat/cat_1.png"]
    assert files(root)["train/dog/cat_1.png"] == original["train/dog/cat_1.png"]
    undo(split_audit)
    assert files(root) == original


def test_apply_twice_moves_nothing_the_second_time(split_audit: Path) -> None:
    decide(split_audit, ("train/cat/cat_1.png", "relabel", "dog"),
           ("train/dog/dog_2.png", "drop", None))
    first = apply_decisions(split_audit)
    tree = files(split_audit.parent)
    second = apply_decisions(split_audit)
    assert second.moved == [] and sorted(second.already) == sorted(m.source for m in first.moved)
    assert files(split_audit.parent) == tree
    assert len(read_journal(split_audit)) == 2  # not journaled twice

    # A decision made later is applied on its own; one changed after its apply is left alone.
    record_decision(AuditFolder.load(split_audit), "val/bird/bird_v0.png", "drop")
    record_decision(AuditFolder.load(split_audit), "train/dog/dog_2.png", "keep")
    third = apply_decisions(split_audit)
    assert [m.source for m in third.moved] == ["val/bird/bird_v0.png"]
    assert third.conflicts == ["train/dog/dog_2.png was moved to _dropped/train/dog/dog_2.png "
                               "by an earlier apply and its decision changed since: undo, then "
                               "apply again"]


def test_a_file_deleted_since_the_audit_is_reported_not_a_crash(split_audit: Path) -> None:
    (split_audit.parent / "train" / "dog" / "dog_2.png").unlink()
    decide(split_audit, ("train/dog/dog_2.png", "drop", None),
           ("train/cat/cat_1.png", "relabel", "bird"))
    result = apply_decisions(split_audit)
    assert result.missing == ["train/dog/dog_2.png"]
    assert [m.target for m in result.moved] == ["train/bird/cat_1.png"]


def test_a_run_cut_short_after_its_journal_is_finished_by_the_next_or_undone(
        split_audit: Path) -> None:
    root = split_audit.parent
    original = files(root)
    decide(split_audit, ("train/cat/cat_1.png", "relabel", "dog"),
           ("train/dog/dog_2.png", "drop", None))
    apply_decisions(split_audit)
    # As if the run had stopped after the journal and the first move: put the second back.
    (root / "_dropped" / "train" / "dog" / "dog_2.png").rename(root / "train" / "dog" / "dog_2.png")
    again = apply_decisions(split_audit)
    assert [m.source for m in again.moved] == ["train/dog/dog_2.png"] and again.already == [
        "train/cat/cat_1.png"]
    (root / "_dropped" / "train" / "dog" / "dog_2.png").rename(root / "train" / "dog" / "dog_2.png")
    back = undo(split_audit)  # a move never made is simply not undone
    assert [m.source for m in back.restored] == ["train/cat/cat_1.png"]
    assert files(root) == original and not (root / "_dropped").exists()


def test_undo_leaves_a_file_that_took_the_old_place_and_keeps_its_move(split_audit: Path) -> None:
    root = split_audit.parent
    decide(split_audit, ("train/cat/cat_1.png", "drop", None))
    apply_decisions(split_audit)
    write_png(root / "train" / "cat" / "cat_1.png", (0, 0, 0), seed=5)  # a new file, same name
    result = undo(split_audit)
    assert result.restored == [] and "a file is there now" in result.conflicts[0]
    assert (root / "_dropped" / "train" / "cat" / "cat_1.png").exists()
    assert [m.source for m in read_journal(split_audit)] == ["train/cat/cat_1.png"]
