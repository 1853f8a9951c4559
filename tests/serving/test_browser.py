"""The page in a real headless Chromium: choose or drop an image, see its class; choose a text
file, see the server's message.

Needs Debian's ``chromium`` and ``chromedriver`` (``apt-get install chromium
chromium-driver``); skipped without them. ``DESCEND_SCREENSHOT=PATH`` saves a screenshot of the
page showing a prediction.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest

from descend.evaluation.predict import Classifier
from descend.serving import create_app
from tests.evaluation.conftest import COLORS, photo
from tests.support.web import WAIT, chrome, needs_browser

pytestmark = needs_browser
DROP = """
const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
const data = new DataTransfer();
data.items.add(new File([bytes], arguments[1], {type: "image/jpeg"}));
document.getElementById("drop").dispatchEvent(
    new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
"""


@pytest.fixture
def browser() -> Iterator[object]:
    with chrome(900, 640) as driver:
        yield driver


def test_the_page_shows_the_class_of_a_chosen_or_dropped_image_and_a_text_files_error(
        browser, photo_run: Path, tmp_path: Path,
        serve: Callable[[object], AbstractContextManager[str]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    classifier = Classifier.load(photo_run / "best.pt", "cpu")
    images = {}
    for name, color in COLORS.items():  # a photo of each colour, bigger than the model's input
        images[name] = tmp_path / f"{name}.jpg"
        photo(color, (240, 320), np.random.default_rng(3)).save(images[name], quality=92)
        assert classifier.predict(images[name]).top[0][0] == name  # the model knows them
    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")

    with serve(create_app(classifier, checkpoint=str(photo_run / "best.pt"))) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, WAIT)
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "mlp"))
        chooser = browser.find_element(By.ID, "file")
        for name in ("blue", "red"):  # two in turn: the second answer replaces the first
            chooser.send_keys(str(images[name]))
            wait.until(EC.text_to_be_present_in_element((By.ID, "status"), f"{name}.jpg: top"))
            rows = browser.find_elements(By.CSS_SELECTOR, "#result li")
            assert rows[0].find_element(By.CLASS_NAME, "class").text == name
            assert len(rows) == 3 and rows[0].text.endswith("%")
        assert browser.find_element(By.ID, "error").text == ""
        if os.environ.get("DESCEND_SCREENSHOT"):
            browser.save_screenshot(os.environ["DESCEND_SCREENSHOT"])

        # Dropped on the drop zone: a drop event carrying the file, as a browser sends it.
        browser.execute_script(DROP, base64.b64encode(images["green"].read_bytes()).decode(),
                               "green.jpg")
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "green.jpg: top"))
        first = browser.find_element(By.CSS_SELECTOR, "#result li .class")
        assert first.text == "green"

        chooser.send_keys(str(text))
        wait.until(EC.text_to_be_present_in_element((By.ID, "error"), "notes.txt: not an image"))
        assert browser.find_element(By.ID, "error").is_displayed()
        assert browser.find_elements(By.CSS_SELECTOR, "#result li") == []


def test_with_explain_on_the_page_shows_the_overlay_under_the_prediction(
        browser, photo_run: Path, tmp_path: Path,
        serve: Callable[[object], AbstractContextManager[str]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    classifier = Classifier.load(photo_run / "best.pt", "cpu")
    image = tmp_path / "blue.jpg"
    photo(COLORS["blue"], (240, 320), np.random.default_rng(4)).save(image, quality=92)

    with serve(create_app(classifier, checkpoint=str(photo_run / "best.pt"))) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, WAIT)
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "mlp"))
        toggle = browser.find_element(By.ID, "explain")
        assert not toggle.is_selected()  # off until asked for
        toggle.click()
        browser.find_element(By.ID, "file").send_keys(str(image))
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "blue.jpg: top"))
        overlay = browser.find_element(By.ID, "overlay")
        wait.until(lambda d: d.execute_script("return arguments[0].complete", overlay))
        assert overlay.get_attribute("src").startswith("data:image/png;base64,")
        assert browser.execute_script("return arguments[0].naturalWidth", overlay) == \
            classifier.input_size[1]
        assert overlay.is_displayed()
        caption = browser.find_element(By.ID, "method").text
        assert "integrated-gradients" in caption and "blue" in caption  # mlp: no convolutions
        # Below the prediction, not beside or over it.
        rows = browser.find_elements(By.CSS_SELECTOR, "#result li")
        assert rows[0].find_element(By.CLASS_NAME, "class").text == "blue"
        assert overlay.location["y"] > rows[-1].location["y"]
        if os.environ.get("DESCEND_SCREENSHOT"):
            browser.save_screenshot(os.environ["DESCEND_SCREENSHOT"].replace(
                ".png", "-explain.png"))

        toggle.click()  # off again: the next answer has no explanation, and none is shown
        browser.find_element(By.ID, "file").send_keys(str(image))
        wait.until(EC.invisibility_of_element_located((By.ID, "explanation")))
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "blue.jpg: top"))
        assert not overlay.is_displayed()
