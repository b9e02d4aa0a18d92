"""How docs/page-image.png and docs/page-text.png were made: the page of a real `cnnapp serve` in
headless Chromium, on the models `make demo` trains.

    cnnapp train-image --name digits && cnnapp train-text --name demo-sentences
    python -m cnnapp.data.image.digits --write-samples runs/digits-samples
    python docs/screenshot_page.py --model-base-path saved_models --image runs/digits-samples/digit-3.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

DOCS = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-base-path", default="saved_models")
    parser.add_argument("--image-model", default="digits")
    parser.add_argument("--text-model", default="demo-sentences")
    parser.add_argument("--image", required=True, help="an image file to upload")
    parser.add_argument("--sentence", default="the cast is a tedious mess , but the soundtrack shines")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cnnapp", "serve", "--model-base-path", args.model_base_path,
                               "--port", "0", "--rest_api_port", str(port)], stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        if "Uvicorn running on" in line:
            break
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    wait = WebDriverWait(driver, 60, poll_frequency=0.1)
    try:
        url = f"http://127.0.0.1:{port}"
        driver.get(f"{url}/#model={args.image_model}")
        wait.until(lambda d: d.find_element("id", "model-name").text == args.image_model)
        driver.find_element("id", "file").send_keys(str(Path(args.image).resolve()))
        wait.until(lambda d: d.execute_script("const i = document.getElementById('gradcam-image');"
                                              "return i.complete && i.naturalWidth > 0"))
        shoot(driver, DOCS / "page-image.png")
        driver.get(f"{url}/#model={args.text_model}")
        wait.until(lambda d: d.find_element("id", "model-name").text == args.text_model)
        driver.find_element("id", "sentence").send_keys(args.sentence)
        driver.find_element("id", "explain-text").click()
        wait.until(lambda d: d.find_elements("css selector", "#highlighted .token"))
        shoot(driver, DOCS / "page-text.png")
    finally:
        driver.quit()
        server.terminate()
        server.communicate(timeout=30)


def shoot(driver, path: Path) -> None:
    driver.set_window_size(1280, 800)                 # measure the page, not the last window
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height + 140, 4000))   # the window is taller than its viewport
    driver.save_screenshot(str(path))
    print(path)


if __name__ == "__main__":
    main()
