"""The review page in a real headless Chromium: keep, relabel and drop suspects and one side of
a duplicate pair with the keyboard and the mouse, then apply the decisions and find the files
moved on disk.

Needs Debian's ``chromium`` and ``chromedriver`` (``apt-get install chromium
chromium-driver``); skipped without them. ``DESCEND_SCREENSHOT=PATH`` saves a screenshot of the
grid; the images are then CIFAR-10's (from ``DESCEND_DATA`` or ``../shared/datasets``) when it
is there, so that the picture shows something recognisable.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descend.audit.apply import apply_decisions
from descend.audit.decisions import read_decisions
from descend.audit.review import create_review_app
from tests.audit.conftest import COLORS, write_audit
from tests.support.web import WAIT, chrome, needs_browser
from tests.support.web import running as serving

pytestmark = needs_browser
CIFAR = Path(os.environ.get("DESCEND_DATA") or Path(__file__).parents[3] / "shared" / "datasets"
             ) / "cifar10" / "test"


def pictures() -> dict[str, list[Image.Image]]:
    """Three pictures of each class: CIFAR-10's, 96 px, for a screenshot; else noisy colours."""
    if os.environ.get("DESCEND_SCREENSHOT") and CIFAR.is_dir():
        return {name.name: [Image.open(p).convert("RGB").resize((96, 96), Image.BICUBIC)
                            for p in sorted(name.iterdir())[:3]]
                for name in sorted(CIFAR.iterdir()) if name.is_dir()}
    rng = np.random.default_rng(0)
    return {name: [Image.fromarray(np.clip(np.array(color) + rng.integers(-40, 40, (32, 32, 3)),
                                           0, 255).astype(np.uint8)) for _ in range(3)]
            for name, color in COLORS.items()}


def reviewed_dataset(root: Path) -> Path:
    """A train/val folder where one picture of each class is filed under the next class (a
    suspect: given the folder's class, suggested its own), some are noise (outliers), and one
    train picture is also in val (a duplicate pair). Returns the audit's folder."""
    pics = pictures()
    classes = list(pics)
    suspects, score = [], 0.99
    for name in classes:
        (root / "train" / name).mkdir(parents=True)
    for k, name in enumerate(classes):
        for i, picture in enumerate(pics[name][:2]):
            picture.save(root / "train" / name / f"{name}_{i}.png")
        wrong = classes[(k + 1) % len(classes)]
        path = f"train/{wrong}/{name}_2.png"
        pics[name][2].save(root / path)
        suspects.append({"id": f"s{k}", "path": path, "split": "train", "given": wrong,
                         "suggested": name, "kind": "label", "score": round(score, 2),
                         "probabilities": {name: round(score, 2), wrong: round(1 - score, 2)}})
        score -= 0.03
    rng = np.random.default_rng(1)
    for k in range(max(2, 8 - len(classes))):  # eight tiles at least
        name = classes[k % len(classes)]
        noise = Image.fromarray(rng.integers(0, 255, (96, 96, 3)).astype(np.uint8))
        noise.save(root / "train" / name / f"noise_{k}.png")
        suspects.append({"id": f"o{k}", "path": f"train/{name}/noise_{k}.png", "split": "train",
                         "given": name, "suggested": None, "kind": "outlier",
                         "score": round(0.7 - k / 10, 2), "probabilities": {name: 0.4}})
    (root / "val" / classes[0]).mkdir(parents=True)
    shutil.copy(root / "train" / classes[0] / f"{classes[0]}_0.png",
                root / "val" / classes[0] / "copy.png")
    duplicate = {"id": "d1", "a": f"train/{classes[0]}/{classes[0]}_0.png",
                 "b": f"val/{classes[0]}/copy.png", "splits": ["train", "val"],
                 "hash_distance": 0, "cosine": 1.0}
    return write_audit(root, suspects, [duplicate], classes)


@contextmanager
def running(audit_dir: Path) -> Iterator[str]:
    """The review app on a free port; yields its URL."""
    with serving(create_review_app(audit_dir)) as address:
        yield address


@pytest.fixture
def browser() -> Iterator[object]:
    with chrome(1280, 900) as driver:
        yield driver


def test_decisions_made_on_the_page_move_the_files_when_applied(browser, tmp_path: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path / "pets"
    audit_dir = reviewed_dataset(root)
    audit = json.loads((audit_dir / "audit.json").read_text())
    s = audit["suspects"]
    classes = audit["classes"]
    before = {p: (root / p).read_bytes() for p in [x["path"] for x in s] + ["val/" + classes[0] +
                                                                             "/copy.png"]}

    with running(audit_dir) as address:
        browser.get(address + "/")
        # A decided tile is drawn anew: an element found just before may be gone.
        wait = WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException])
        tiles = lambda: browser.find_elements(By.CSS_SELECTOR, "#grid .tile")
        wait.until(lambda b: len(tiles()) == len(s))
        decision = lambda i: tiles()[i].find_element(By.CLASS_NAME, "decision").text
        shown = lambda i, text: wait.until(lambda b: decision(i) == text)
        page = browser.find_element(By.TAG_NAME, "body")
        assert tiles()[0].get_attribute("aria-selected") == "true"
        assert tiles()[0].find_element(By.CLASS_NAME, "given").text == s[0]["given"]
        assert tiles()[0].find_element(By.CLASS_NAME, "suggested").text == s[0]["suggested"]
        wait.until(lambda b: b.execute_script(  # every image loaded from /image
            "return [...document.images].every((i) => i.complete && i.naturalWidth > 0)"))

        page.send_keys("k")  # keep the first; the selection moves on to the second
        shown(0, "\u2713 keep")
        page.send_keys("r")  # the second to its suggested class
        shown(1, f"relabel \u2192 {s[1]['suggested']}")
        page.send_keys(Keys.ARROW_RIGHT, "d")  # skip the third, drop the fourth
        shown(3, "\u2717 drop")
        assert decision(2) == "undecided"
        tiles()[4].click()  # a click and a digit: relabel to class 1
        page.send_keys("1")
        shown(4, f"relabel \u2192 {classes[0]}")
        outlier = len(s) - 1
        tiles()[outlier].click()  # the mouse only: an outlier dropped with the button
        browser.find_element(By.ID, "drop").click()
        shown(outlier, "\u2717 drop")
        tiles()[outlier - 1].click()
        page.send_keys("r")  # an outlier has no suggested class: said, nothing sent
        wait.until(EC.text_to_be_present_in_element((By.ID, "error"), "no suggested class"))
        assert decision(outlier - 1) == "undecided"
        page.send_keys("?")
        assert browser.find_element(By.ID, "help").is_displayed()
        page.send_keys(Keys.ESCAPE)
        assert not browser.find_element(By.ID, "help").is_displayed()
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress"),
                                                    f"5 of {len(s)} suspects decided"))
        tiles()[2].click()  # another tile: the message about the last one goes
        wait.until(lambda b: b.find_element(By.ID, "error").text == "")
        if os.environ.get("DESCEND_SCREENSHOT"):
            browser.set_window_size(1280, 1100)  # the whole grid
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(os.environ["DESCEND_SCREENSHOT"])

        browser.find_element(By.ID, "tab-duplicates").click()  # the pair: drop its val side
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#grid .pair")) == 1)
        browser.find_element(By.ID, "drop-b").click()
        wait.until(lambda b: b.find_element(
            By.CSS_SELECTOR, ".pair .side[data-side='b'] .decision").text == "\u2717 drop")

    assert {p: (d.action, d.to) for p, d in read_decisions(audit_dir).items()} == {
        s[0]["path"]: ("keep", None), s[1]["path"]: ("relabel", s[1]["suggested"]),
        s[3]["path"]: ("drop", None), s[4]["path"]: ("relabel", classes[0]),
        s[outlier]["path"]: ("drop", None), f"val/{classes[0]}/copy.png": ("drop", None)}

    result = apply_decisions(audit_dir)
    assert len(result.moved) == 5 and result.kept == 1
    name = lambda i: s[i]["path"].rsplit("/", 1)[1]
    assert (root / s[0]["path"]).read_bytes() == before[s[0]["path"]]  # kept, where it was
    assert (root / "train" / s[1]["suggested"] / name(1)).read_bytes() == before[s[1]["path"]]
    assert (root / "_dropped" / s[3]["path"]).read_bytes() == before[s[3]["path"]]
    assert (root / "train" / classes[0] / name(4)).read_bytes() == before[s[4]["path"]]
    assert (root / "_dropped" / s[outlier]["path"]).exists()
    assert (root / "_dropped" / "val" / classes[0] / "copy.png").exists()
    for i in (1, 3, 4, outlier):
        assert not (root / s[i]["path"]).exists()
