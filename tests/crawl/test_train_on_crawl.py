"""End to end: crawl from the fake web, train on the folder, predict one crawled image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from descend.crawl import ClassSpec, CrawlConfig, crawl
from tests.support.fakeweb import FakeWeb, pictures


def test_crawl_then_train_then_predict(web: FakeWeb, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    main = pytest.importorskip("descend.cli.main").main  # the training side of the project
    tints = {"猫": (230, 60, 40), "狗": (40, 80, 230)}
    for k, (word, tint) in enumerate(tints.items()):
        web.baidu[word] = [web.add(f"/{k}/{i}.jpg", b)
                           for i, b in enumerate(pictures(34, start=100 * k, tint=tint))]
    out = tmp_path / "pets"
    report = crawl(CrawlConfig([ClassSpec("cat", ("猫",)), ClassSpec("dog", ("狗",))], out,
                               per_class=30, base_url=web.url, progress=False))
    assert [c.kept for c in report.classes] == [30, 30]

    run_dir = tmp_path / "run"
    rc = main(["train", "--data", f"imagefolder:{out}", "--model", "mlp", "--epochs", "1",
               "--batch-size", "8", "--out", str(run_dir), "--cache-dir", str(tmp_path / "cache"),
               "--no-progress"])
    assert rc == 0
    assert (run_dir / "best.pt").is_file()
    capsys.readouterr()

    image = sorted((out / "val" / "dog").glob("*.jpg"))[0]
    assert main(["predict", str(run_dir / "best.pt"), str(image), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["errors"] == []
    [result] = answer["predictions"]
    assert result["path"] == str(image)
    assert {p["class"] for p in result["predictions"]} == {"cat", "dog"}  # the crawl's classes
    assert abs(sum(p["probability"] for p in result["predictions"]) - 1) < 1e-3
