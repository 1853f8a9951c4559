"""descend declares Python >= 3.10, where the standard library has no tomllib: a real Python
3.10 reads a TOML config file (through tomli) and parses every module. Slow: it makes a venv."""

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _python310() -> str | None:
    found = shutil.which("python3.10")
    if found and "pyenv/shims" not in found:
        return found
    candidates = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10*/bin/python3.10")))
    return candidates[-1] if candidates else None


@pytest.mark.slow
def test_python_3_10_reads_toml_and_compiles_everything(tmp_path: Path) -> None:
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    venv = tmp_path / "py310"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "tomli>=1.1", "PyYAML"],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        pytest.skip(f"cannot install tomli for Python 3.10 here: {pip.stderr[-200:]}")
    (tmp_path / "c.toml").write_text('lr = 0.05\nepochs = 3\nmean = "0.5,0.5,0.5"\n'
                                     'std = [0.2, 0.2, 0.2]\n')
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from descend.config import TrainConfig, read_config_file; "
            "import descend.cli.flags; "
            "c = TrainConfig.from_dict(read_config_file(sys.argv[2])).validate(); "
            "print(sys.version_info[:2], c.lr, c.epochs, c.mean)")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code, str(ROOT),
                           str(tmp_path / "c.toml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(3, 10) 0.05 3 [0.5, 0.5, 0.5]"
    parse = ("import ast, pathlib, sys; "  # 3.10's own grammar, and no .pyc written
             "[ast.parse(p.read_text(), str(p)) for p in pathlib.Path(sys.argv[1]).rglob('*.py')]")
    parsed = subprocess.run([str(venv / "bin" / "python"), "-c", parse, str(ROOT / "descend")],
                            capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    assert sys.version_info >= (3, 10)
