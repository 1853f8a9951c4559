"""`descend export`: run folders, safe writes, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from descend.cli.main import main


def test_a_run_folder_exports_beside_its_best_checkpoint(
        old_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(old_run)]) == 0
    out = capsys.readouterr().out
    assert (old_run / "model.onnx").is_file() and (old_run / "model.onnx.json").is_file()
    assert out.splitlines()[-1] == f"wrote model.onnx, model.onnx.json to {old_run}"
    assert f'InferenceSession("{old_run / "model.onnx"}")' in out
    assert "blue, green, red" in out
    described = json.loads((old_run / "model.onnx.json").read_text(encoding="utf-8"))
    assert described["source"]["checkpoint"] == "run-0.1.0/best.pt"


def test_an_existing_export_is_kept_unless_overwrite(
        old_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = old_run / "model.torchscript.pt"
    target.write_bytes(b"an earlier export")
    assert main(["export", str(old_run), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds model.torchscript.pt" in err
    assert "--overwrite" in err
    assert target.read_bytes() == b"an earlier export"
    assert not (old_run / "model.torchscript.pt.json").exists()
    assert main(["export", str(old_run), "--format", "torchscript", "--overwrite", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)  # one document, indented as every --json is
    assert out.startswith('{\n  "path"')
    assert result["path"] == str(target) and result["format"] == "torchscript"
    assert err == f"wrote model.torchscript.pt, model.torchscript.pt.json to {old_run}\n"
    assert target.read_bytes() != b"an earlier export"


def test_a_stale_sidecar_alone_also_needs_overwrite(
        old_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (old_run / "model.onnx.json").write_text("{}", encoding="utf-8")
    assert main(["export", str(old_run)]) == 2
    assert "already holds model.onnx.json from an earlier run" in capsys.readouterr().err


def test_a_checkpoint_is_never_replaced(old_run: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.read_bytes() for p in old_run.glob("*.pt")}
    for out in ("best.pt", "last.pt"):
        assert main(["export", str(old_run / "best.pt"), "--format", "torchscript", "--out",
                     str(old_run / out), "--overwrite"]) == 2
        assert "choose another --out" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in old_run.glob("*.pt")} == before


def test_out_is_the_folder_and_a_file_name_still_works_this_release(
        old_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for out in (tmp_path / "folder", f"{tmp_path / 'slash'}/", tmp_path / "new.d"):
        assert main(["export", str(old_run), "--format", "torchscript", "--out", str(out)]) == 0
        assert (Path(out) / "model.torchscript.pt").is_file()
        assert (Path(out) / "model.torchscript.pt.json").is_file()
    capsys.readouterr()
    assert main(["export", str(old_run / "last.pt"), "--out", str(tmp_path / "a" / "m.onnx"),
                 "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["path"] == str(tmp_path / "a" / "m.onnx")
    assert (tmp_path / "a" / "m.onnx.json").is_file()
    assert f"note: --out {tmp_path / 'a' / 'm.onnx'} (a file) is deprecated" in err
    assert main(["export", str(old_run), "--out", str(tmp_path / "a" / "m.onnx")]) == 2
    assert "already holds m.onnx, m.onnx.json" in capsys.readouterr().err


@pytest.mark.parametrize("make", ["missing", "not-a-checkpoint", "empty-folder"])
def test_a_bad_checkpoint_is_one_line(make: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ckpt.pt"
    if make == "not-a-checkpoint":
        path.write_bytes(b"not a checkpoint")
    elif make == "empty-folder":
        path = tmp_path / "run"
        path.mkdir()
    assert main(["export", str(path), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descend: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("model.*"))


def test_an_unknown_format_is_refused(old_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", str(old_run), "--format", "tflite"])
    assert e.value.code == 2 and "onnx" in capsys.readouterr().err
