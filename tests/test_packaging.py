"""The package as a user installs it: a wheel, ``pip install descend`` without extras, and the
one line that names the extra a command needs (descend/extras.py)."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import descend
from descend.errors import MissingExtraError
from descend.extras import EXTRAS, missing, require

ROOT = Path(__file__).resolve().parent.parent


def test_require_names_the_extra_and_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert missing("serve") == ["uvicorn"] and missing("crawl") == []
    with pytest.raises(MissingExtraError,
                       match=r"descend serve needs descend's 'serve' extra \(uvicorn is not "
                             r"installed\): pip install 'descend\[serve\]'"):
        require("serve", "descend serve")
    require("crawl", "descend crawl")  # installed here: nothing to say


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: setuptools comes from this environment, nothing is downloaded.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(ROOT)], check=True,
                   capture_output=True)
    (made,) = out.glob("descend-*.whl")
    return made


def test_the_wheel_declares_the_core_and_each_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(meta_name))
    assert meta["Version"] == descend.__version__
    requires = meta.get_all("Requires-Dist")
    core = {r.split(";")[0].split(">")[0].split("<")[0].strip().lower()
            for r in requires if "extra ==" not in r}
    assert {"torch", "torchvision", "pillow", "safetensors"} <= core
    for extra, packages in EXTRAS.items():
        assert extra in meta.get_all("Provides-Extra")
        for dist in packages.values():
            assert dist.lower() not in core, f"{dist} belongs to the {extra} extra"
            assert any(r.lower().startswith(dist.lower()) and f'extra == "{extra}"' in r
                       for r in requires), (dist, extra)
    # The files the package reads at run time travel with it.
    assert "descend/serving/page.html" in names
    assert any(n.startswith("descend/data/sample/") for n in names)


def core_site(tmp: Path) -> Path:
    """A folder of links to this environment's packages, less descend itself and every
    extra's: what ``pip install descend`` would have put beside it."""
    site = Path(sysconfig.get_paths()["purelib"])
    left_out = {m.lower() for packages in EXTRAS.values() for m in packages} | {"multipart"}
    links = tmp / "core-site"
    links.mkdir()
    for entry in site.iterdir():
        top = entry.name.split(".")[0].split("-")[0].lower()
        if (top in left_out or top.startswith(("descend", "__editable__", "_descend"))
                or entry.suffix == ".pth"
                or any(entry.name.lower().startswith(d.lower().replace("-", "_") + "-")
                       for packages in EXTRAS.values() for d in packages.values())):
            continue
        (links / entry.name).symlink_to(entry)
    return links


def test_pip_install_descend_without_extras_trains_and_names_each_missing_extra(
        wheel: Path, tmp_path: Path) -> None:
    """The wheel in a new venv that sees the core dependencies alone (the torch here, through a
    .pth file: no download): training works, and serve, crawl and ONNX export each say which
    extra to install, in one line, with exit status 2."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    purelib = subprocess.run([str(python), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "core.pth").write_text(str(core_site(tmp_path)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    cli = venv / "bin" / "descend"

    def descend_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cli), *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    where = subprocess.run([str(python), "-c", "import descend; print(descend.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where  # the installed wheel, not this checkout
    assert descend_cli("--version").stdout.strip() == f"descend {descend.__version__}"
    fixture_run = ROOT / "tests" / "fixtures" / "run-0.1.0"
    for args, extra in [(["serve", str(fixture_run)], "serve"),
                        (["crawl", "--class", "cat", "--out", "pets"], "crawl"),
                        # a source's own flag, unknown without the extra that declares it
                        (["crawl", "--source", "urls", "--urls-file", "u.txt", "--out", "pets"],
                         "crawl"),
                        (["export", str(fixture_run), "--format", "onnx", "--out",
                          str(tmp_path / "m.onnx")], "export")]:
        answer = descend_cli(*args)
        assert answer.returncode == 2, answer
        assert f"pip install 'descend[{extra}]'" in answer.stderr, answer.stderr
        assert "Traceback" not in answer.stderr
    trained = descend_cli("train", "--data", "cifar10-sample", "--model", "mlp", "--epochs", "1",
                          "--out", "run", "--no-progress")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "run" / "best.pt").is_file()
