"""`descend predict` on many files: an unreadable one is that file's error, never the run's."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from descend.cli.main import main


def _unreadable(path: Path) -> None:
    """A file whose bytes cannot be read: no read permission, or, where permissions do not
    stop this user (root), a link to a file that fails to read (Linux's /proc/self/mem)."""
    path.write_bytes(b"\x89PNG")
    path.chmod(0)
    if os.access(path, os.R_OK):
        if not Path("/proc/self/mem").is_file():
            pytest.skip("running as root with no file that fails to read")
        path.unlink()
        path.symlink_to("/proc/self/mem")


def test_predict_reports_each_unreadable_file_and_predicts_the_rest(
        photo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    val = photo_run.parent / "data" / "val" / "red"
    good = sorted(val.glob("photo_*"))[:2]
    for f in good:
        shutil.copy(f, imgs / f.name)
    (imgs / "folder.jpg").mkdir()  # a folder named like an image
    _unreadable(imgs / "locked.png")
    (imgs / "notes.png").write_text("<html>not found</html>")
    (imgs / "empty.jpg").write_bytes(b"")
    capsys.readouterr()
    rc = main(["predict", str(photo_run / "best.pt"), str(imgs), str(imgs / "folder.jpg"),
               "--device", "cpu", "--top-k", "2"])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err
    lines = out.splitlines()
    assert sorted(line.split(": ")[0] for line in lines) == [str(imgs / f.name) for f in good]
    assert all(": red " in line and line.count(", ") == 1 for line in lines)
    assert f"{imgs / 'locked.png'}: ERROR unreadable: " in err
    assert f"{imgs / 'notes.png'}: ERROR not-an-image" in err
    assert f"{imgs / 'empty.jpg'}: ERROR empty" in err
    assert f"{imgs / 'folder.jpg'}: ERROR folder holds no image files" in err
    assert "4 input(s) could not be predicted" in err

    rc = main(["predict", str(photo_run / "best.pt"), str(imgs / "*"), "--json",
               "--device", "cpu"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and len(report["predictions"]) == 2
    assert sorted(Path(e["path"]).name for e in report["errors"]) == [
        "empty.jpg", "locked.png", "notes.png"]  # the glob passes over the folder
