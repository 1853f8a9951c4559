"""``descend crawl`` through its own argparse parser, as the command line runs it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from descend.cli import crawl as crawl_cli
from descend.errors import ConfigError
from tests.support.fakeweb import FakeWeb, Route, pictures


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="descend")
    crawl_cli.add_parser(parser.add_subparsers(dest="command"))
    return crawl_cli.run(parser.parse_args(["crawl", *argv]))


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_crawl_prints_a_summary_and_makes_an_imagefolder(web: FakeWeb, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    web.baidu["猫"] = [web.add(f"/c{i}.jpg", b) for i, b in enumerate(pictures(12))]
    web.baidu["狗"] = [web.add(f"/d{i}.jpg", b) for i, b in enumerate(pictures(12, start=50))]
    web.baidu["狗"].append(web.url + "/missing.jpg")
    out = tmp_path / "pets"
    rc = cli(["--class", "cat=猫", "--class", "dog=狗", "--per-class", "10", "--out", str(out),
              "--base-url", web.url, "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "class" in printed and "10/10" in printed and "manifest" in printed
    assert printed.splitlines()[-1] == f"wrote train/, val/, manifest.jsonl to {out}"
    for split, n in (("train", 8), ("val", 2)):
        for name in ("cat", "dog"):
            assert len(list((out / split / name).glob("*.jpg"))) == n


def test_fail_if_short_fails_when_a_class_comes_up_short(web: FakeWeb, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    web.baidu["猫"] = [web.add(f"/c{i}.jpg", b) for i, b in enumerate(pictures(3))]
    argv = ["--class", "cat=猫", "--per-class", "5", "--out", str(tmp_path / "o"),
            "--base-url", web.url, "--no-progress"]
    assert cli(argv) == 0
    assert "only 3 of 5" in capsys.readouterr().out
    assert cli([*argv, "--fail-if-short"]) == 1
    assert "--fail-if-short: too few images for cat (3/5)" in capsys.readouterr().err
    assert cli([*argv, "--strict"]) == 1  # the old spelling, this release
    err = capsys.readouterr().err
    assert "note: crawl --strict is deprecated" in err and "use --fail-if-short" in err


def test_json_prints_the_summary_as_one_document(web: FakeWeb, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    web.baidu["猫"] = [web.add(f"/c{i}.jpg", b) for i, b in enumerate(pictures(4))]
    web.baidu["猫"].append(web.url + "/missing.jpg")
    out = tmp_path / "o"
    assert cli(["--class", "cat=猫", "--per-class", "5", "--out", str(out), "--base-url",
                web.url, "--progress", "--json"]) == 0
    printed, err = capsys.readouterr()
    summary = json.loads(printed)  # stdout holds the document alone
    assert printed.startswith('{\n  "folder"')
    assert summary["folder"] == str(out) and summary["images"] == 4
    [cat] = summary["classes"]
    assert (cat["class"], cat["kept"], cat["target"]) == ("cat", 4, 5)
    assert cat["train"] + cat["val"] == 4 and cat["rejected"] == 1
    assert cat["rejected_by_reason"] == {"http-404": 1} and cat["why_none"] is None
    assert summary["short"] == ["cat"] and any("only 4 of 5" in n for n in cat["notes"])
    assert err.endswith(f"wrote train/, val/, manifest.jsonl to {out}\n")


@pytest.mark.parametrize(("answer", "why"), [
    (Route(b"<html>please prove you are human</html>", content_type="text/html"),
     "no images: baidu answered in a shape descend does not read (1 results page)"),
    (Route(b"forbidden", status=403, content_type="text/plain"),
     "no images: baidu refused the search (HTTP 403, 1 results page)"),
    (Route(b'{"data": [{}]}', content_type="application/json"),
     "no images: baidu found nothing (1 results page without results)"),
])
def test_a_search_that_yields_no_image_says_why_in_one_line(
        web: FakeWeb, tmp_path: Path, capsys: pytest.CaptureFixture, answer: Route,
        why: str) -> None:
    web.raw_pages["猫"] = answer
    argv = ["--class", "cat=猫", "--per-class", "3", "--out", str(tmp_path / "o"),
            "--base-url", web.url, "--no-progress", "--retries", "0"]
    assert cli(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "no images" in line]
    assert len(lines) == 1 and lines[0].startswith(f"cat: {why}"), lines
    assert cli([*argv, "--json"]) == 0
    [cat] = json.loads(capsys.readouterr().out)["classes"]
    assert cat["why_none"].startswith(why) and cat["found"] == 0


def test_url_list_gives_the_classes_when_none_are_named(web: FakeWeb, tmp_path: Path) -> None:
    urls = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(pictures(6))]
    listing = tmp_path / "urls.txt"
    listing.write_text("# class url\n" + "".join(
        f"{'dog' if i < 3 else 'cat'} {u}\n" for i, u in enumerate(urls)))
    out = tmp_path / "o"
    # The fake web is on 127.0.0.1 and a URL list has no --base-url: the switch opts in.
    assert cli(["--source", "urls", "--urls-file", str(listing), "--per-class", "3",
                "--val-fraction", "0", "--out", str(out), "--no-progress",
                "--allow-private-addresses"]) == 0
    assert {p.name for p in (out / "train").iterdir()} == {"cat", "dog"}


@pytest.mark.parametrize("name", ["../../etc", "a/b", "/abs", "..", ".", ""])
def test_unsafe_class_names_write_nothing_anywhere(web: FakeWeb, tmp_path: Path,
                                                   name: str) -> None:
    web.baidu["x"] = [web.add("/p.jpg", pictures(1)[0])]
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ConfigError, match="cannot be a folder name"):
        cli(["--class", f"{name}=x", "--out", str(work / "out"), "--base-url", web.url,
             "--no-progress"])
    assert _tree(tmp_path) == {"work"}  # not even the output folder was made
    assert web.requests == []


def test_bad_option_values_are_config_errors(tmp_path: Path) -> None:
    base = ["--class", "cat", "--out", str(tmp_path / "o")]
    with pytest.raises(ConfigError, match="--val-fraction"):
        cli([*base, "--val-fraction", "1.5"])
    with pytest.raises(ConfigError, match="size 'lots'"):
        cli([*base, "--max-bytes", "lots"])
    with pytest.raises(ConfigError, match="needs --urls-file"):
        cli([*base, "--source", "urls"])
    with pytest.raises(ConfigError, match="no class"):
        cli(["--out", str(tmp_path / "o")])


def test_through_the_descend_command(web: FakeWeb, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    main = pytest.importorskip("descend.cli.main").main
    assert main(["crawl", "--class", "a/b=x", "--out", str(tmp_path / "o")]) == 2
    assert "cannot be a folder name" in capsys.readouterr().err
    web.baidu["x"] = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(pictures(4))]
    assert main(["crawl", "--class", "ab=x", "--per-class", "4", "--out", str(tmp_path / "o"),
                 "--base-url", web.url, "--no-progress"]) == 0


def test_an_output_path_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot use --out"):
        cli(["--class", "cat", "--out", str(tmp_path / "file"), "--no-progress"])


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1", "1e300"])
def test_a_timeout_that_is_not_a_positive_finite_time_is_refused(tmp_path: Path,
                                                                 value: str) -> None:
    with pytest.raises(ConfigError, match="--timeout"):
        cli(["--class", "cat", "--out", str(tmp_path / "o"), f"--timeout={value}"])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("flag", "value"), [("--rate", "inf"), ("--backoff", "inf"),
                                             ("--val-fraction", "nan")])
def test_other_non_finite_numbers_are_refused(tmp_path: Path, flag: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{flag} must be a finite number"):
        cli(["--class", "cat", "--out", str(tmp_path / "o"), flag, value])


def test_a_class_name_too_long_in_bytes_is_refused_before_anything_is_made(
        web: FakeWeb, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    name = "猫" * 90  # 90 characters pass the length check; 270 bytes pass no file system
    web.baidu["x"] = [web.add("/p.jpg", pictures(1)[0])]
    main = pytest.importorskip("descend.cli.main").main
    assert main(["crawl", "--class", f"{name}=x", "--out", str(tmp_path / "o"),
                 "--base-url", web.url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert name in err and "270 bytes" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and web.requests == []
