"""A screenshot of the ``descend serve`` page after it predicted an image, in headless Chromium.

    python scripts/serve_screenshot.py CKPT IMAGE [--out /tmp/serve_screenshot.png] [--explain]

Serves CKPT on a free port of 127.0.0.1 in this process, chooses IMAGE in the page's file
input (with the "explain" box ticked, for --explain), waits for the answer and saves the
window. Needs chromium and chromedriver (Debian:
``apt-get install chromium chromium-driver``) and selenium (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from descend.evaluation.predict import Classifier
from descend.serving import bind, create_app, make_server, url


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("image", type=Path)
    p.add_argument("--out", default="/tmp/serve_screenshot.png")
    p.add_argument("--size", default="900,720", help="window width,height in pixels")
    p.add_argument("--explain", action="store_true",
                   help="tick the page's explain box: the answer shows the heat map too")
    args = p.parse_args()

    app = create_app(Classifier.load(args.checkpoint, "cpu"), checkpoint=args.checkpoint)
    sock = bind("127.0.0.1", 0)
    server = make_server(app)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={args.size}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(url(sock) + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "classes"))
        if args.explain:
            driver.find_element(By.ID, "explain").click()
        driver.find_element(By.ID, "file").send_keys(str(args.image.resolve()))
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), ": top"))
        if args.explain:
            wait.until(lambda d: d.execute_script(
                "const img = document.getElementById('overlay');"
                "return img.complete && img.naturalWidth > 0"))
        driver.save_screenshot(args.out)
        print(f"{args.out}: " + "; ".join(
            li.text.replace("\n", " ") for li in driver.find_elements(By.CSS_SELECTOR,
                                                                      "#result li")))
    finally:
        driver.quit()
        server.should_exit = True


if __name__ == "__main__":
    main()
