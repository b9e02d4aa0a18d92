"""The page of `cnnapp serve` in a real headless Chromium against a real server on loopback.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them) and selenium (the dev
extra); skips, saying which is missing, where they are not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import export_tiny_image_model, export_tiny_text_model, png_bytes

EVIL = "<img src=x onerror=alert(1)>"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> tuple[str, str]:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium is not installed: apt-get install chromium chromium-driver "
                    f"(found browser={browser}, chromedriver={driver})")
    return browser, driver


def _export_tiny_vgg(export_base: Path, name: str) -> Path:
    """A tiny global-average-pooled image model (no Flatten head): Grad-CAM is shown first for it."""
    from cnnapp.models.vgg import build_vgg
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask, image_prepared
    import keras
    keras.utils.set_random_seed(0)
    model = build_vgg(input_shape=(8, 8, 1), num_classes=2, filters=(4, 8), convs_per_block=1)
    prepared = image_prepared(ImageDecoder(height=8, width=8, channels=1, name="image_decoder"), num_classes=2)
    return export_model(ImageTask(), model, prepared, class_names=["plain", "striped"], export_base=export_base,
                        name=name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cnnapp serve` in its own process on a free loopback port: image (Flatten and pooled heads), text, evil."""
    base = tmp_path_factory.mktemp("page_models")
    export_tiny_image_model(base, "digits", size=(8, 8))
    _export_tiny_vgg(base, "pooled")
    export_tiny_text_model(base, "sentences")
    export_tiny_image_model(base, "evil", class_names=("cat", EVIL, "dog"))
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cnnapp", "serve", "--model-base-path", str(base),
                             "--port", "0", "--rest_api_port", str(port), "--file-system-poll-wait-seconds", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:            # uvicorn says it listens after the models loaded; EOF: it died
        lines.append(line)
        if "Uvicorn running on" in line:
            break
    assert proc.poll() is None, "".join(lines)[-2000:]
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def browser():
    binary, chromedriver = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1400", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, timeout: float = 60):
    """Wait for a condition of the page (a bounded deadline, no sleeps)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        error = driver.find_element("id", "error").text
        raise AssertionError(f"timed out waiting for {what}; the page's error box says: {error!r}") from None


def _open(driver, server, model: str) -> None:
    """Show `model` on a freshly loaded page (a hash change alone would keep the previous answer)."""
    driver.get("about:blank")
    driver.get(f"{server}/#model={model}")
    _wait(driver, lambda d: d.find_element("id", "model-name").text == model
          and d.execute_script("return document.body.dataset.state") == "idle", f"model {model} to be shown")


def _answered(driver) -> bool:
    """The request made since the model was shown has been answered (the page says 'done')."""
    state = driver.execute_script("return document.body.dataset.state")
    if state == "error":
        raise AssertionError(f"the page shows an error: {driver.find_element('id', 'error').text!r}")
    return state == "done"


def _upload(driver, path: Path) -> None:
    driver.find_element("id", "file").send_keys(str(path))
    _wait(driver, lambda d: _answered(d) and d.execute_script(
        "const i = document.getElementById('gradcam-image');"
        "return document.getElementById('predicted').textContent !== '' && i.complete && i.naturalWidth > 0"),
        "the prediction and the Grad-CAM image")


def _digit_png(tmp_path) -> Path:
    pixels = np.zeros((8, 8, 1), np.uint8)
    pixels[1, 1:7] = 255
    pixels[2:7, 5] = 255
    path = tmp_path / "seven.png"
    path.write_bytes(png_bytes(pixels))
    return path


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_upload_a_png_type_a_sentence_and_screenshot(browser, server, tmp_path):
    _open(browser, server, "digits")
    rows = browser.find_elements("css selector", "#layers tbody tr")
    assert [r.find_elements("tag name", "td")[0].text for r in rows][:3] == ["pixels", "rescale", "conv1"]
    assert not browser.find_element("id", "draw").get_attribute("hidden")      # 8x8 grayscale: a canvas to draw on
    _upload(browser, _digit_png(tmp_path))
    predicted = browser.find_element("id", "predicted").text
    assert predicted in ("zero", "one", "two")
    assert browser.find_element("id", "gradcam-image").get_attribute("src").startswith("data:image/png;base64,")
    assert len(browser.find_elements("css selector", "#maps .layer-maps")) == 2
    assert len(browser.find_elements("css selector", "#filters .tile img")) == 4

    # draw a stroke on the canvas: releasing the pointer explains the drawing
    from selenium.webdriver.common.action_chains import ActionChains
    before = browser.find_element("id", "input-image").get_attribute("src")
    canvas = browser.find_element("id", "canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, -60, -80).click_and_hold() \
        .move_by_offset(60, 40).move_by_offset(20, 100).release().perform()
    _wait(browser, lambda d: _answered(d) and d.find_element("id", "input-image").get_attribute("src") != before,
          "the drawing to be explained")

    _open(browser, server, "sentences")
    browser.find_element("id", "sentence").send_keys("a good film")
    browser.find_element("id", "explain-text").click()
    _wait(browser, lambda d: _answered(d) and len(d.find_elements("css selector", "#highlighted .token")) == 3,
          "highlighted tokens")
    tokens = browser.find_elements("css selector", "#highlighted .token")
    assert [t.text for t in tokens] == ["a", "good", "film"]
    assert browser.find_elements("css selector", "#highlighted .token.hl"), "no n-gram was highlighted"
    assert browser.find_element("id", "predicted").text in ("negative", "positive")

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    import tensorflow as tf
    image = tf.io.decode_png(shot.read_bytes(), channels=3).numpy()
    assert image.shape[0] >= 600 and image.shape[1] >= 1000
    colours = np.unique(image.reshape(-1, 3)[::7], axis=0)
    assert image.std() > 10 and len(colours) > 50, f"a blank screenshot? std {image.std():.1f}, {len(colours)} colours"


def test_a_class_named_like_html_renders_as_text(browser, server, tmp_path):
    _open(browser, server, "evil")
    options = [o.text for o in browser.find_elements("css selector", "#cam-class option")]
    assert EVIL in options
    _upload(browser, _digit_png(tmp_path))
    labels = [e.text for e in browser.find_elements("css selector", "#bars .bar-label")]
    assert EVIL in labels, labels
    # the markup stayed text: no <img src=x> anywhere, and no alert was raised
    assert browser.find_elements("css selector", 'img[src="x"]') == []
    assert browser.execute_script("return document.body.innerHTML").count("&lt;img src=x onerror=alert(1)&gt;") >= 2
    from selenium.common.exceptions import NoAlertPresentException
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text


def _visible(driver, element_id: str) -> bool:
    return driver.find_element("id", element_id).is_displayed()


def _scale(legend) -> tuple[str, str]:
    return (legend.find_element("css selector", ".scale-min").text, legend.find_element("css selector", ".scale-max").text)


def test_the_given_image_flatten_heatmaps_first_colour_scales_and_low_confidence(browser, server, tmp_path):
    _open(browser, server, "digits")
    assert not _visible(browser, "given")
    _upload(browser, _digit_png(tmp_path))
    # the image as given: a thumbnail that loaded, and its file name
    assert _visible(browser, "given") and "seven.png" in browser.find_element("id", "given-name").text
    assert browser.execute_script("const i = document.getElementById('given-image'); return i.complete && i.naturalWidth") == 8
    # a Flatten head (image_cnn): HiResCAM first, and the page says why
    order = [f.get_attribute("id") for f in browser.find_elements("css selector", "#heatmaps figure")]
    assert order == ["", "hirescam", "gradcam"], order
    why = browser.find_element("id", "cam-why")
    assert why.is_displayed() and "Grad-CAM" in why.text and "flattens" in why.text, why.text
    # colour scales beside the heatmaps (0 to each map's peak) and each layer's maps (0 to its largest activation)
    assert _visible(browser, "cam-scale") and _scale(browser.find_element("id", "cam-scale")) == ("0", "1 (peak)")
    for layer in browser.find_elements("css selector", "#maps .layer-maps"):
        low, high = _scale(layer.find_element("css selector", ".scale"))
        first = layer.find_elements("css selector", ".tile[title]")[0].get_attribute("title")   # "map i, max v"
        assert low == "0" and float(high) == pytest.approx(float(first.rsplit("max ", 1)[1]), rel=1e-2), (high, first)
    # an untrained three-class model is unsure: below 50%, a visible hint naming the top class and its share
    top = browser.find_elements("css selector", "#bars .bar-value")[0].text
    assert float(top.rstrip("%")) < 50
    hint = browser.find_element("id", "low-confidence")
    assert hint.is_displayed() and top in hint.text and "below 50%" in hint.text, hint.text

    _open(browser, server, "pooled")        # a global-average-pooled head: Grad-CAM first, no note
    _upload(browser, _digit_png(tmp_path))
    order = [f.get_attribute("id") for f in browser.find_elements("css selector", "#heatmaps figure")]
    assert order == ["", "gradcam", "hirescam"] and not _visible(browser, "cam-why"), order


def test_out_of_vocabulary_words_and_an_empty_sentence(browser, server):
    _open(browser, server, "sentences")
    button, box = browser.find_element("id", "explain-text"), browser.find_element("id", "sentence")
    assert not button.is_enabled() and _visible(browser, "empty-sentence")     # nothing typed: nothing to ask
    box.send_keys("   ")
    assert not button.is_enabled()
    # a submit that bypasses the button asks nothing either (the state would turn "busy" at once)
    assert browser.execute_script("document.getElementById('text-input').requestSubmit();"
                                  "return document.body.dataset.state") == "idle"
    box.send_keys("zork quux blorp a film")
    assert button.is_enabled() and not _visible(browser, "empty-sentence")
    button.click()
    _wait(browser, lambda d: _answered(d) and d.find_element("id", "highlighted").text != "", "the explanation")
    hint = browser.find_element("id", "unknown-words")
    assert hint.is_displayed() and hint.text.startswith("3 of 5 words are not in the model's vocabulary"), hint.text
    assert not _visible(browser, "low-confidence")                             # two classes: the top has >= 50%

    box.clear()
    box.send_keys("a good film")
    button.click()
    _wait(browser, lambda d: _answered(d) and d.find_element("id", "highlighted").text == "a good film",
          "the second explanation")
    assert not _visible(browser, "unknown-words")


def test_a_bad_file_shows_its_error_beside_the_input(browser, server, tmp_path):
    _open(browser, server, "digits")
    _upload(browser, _digit_png(tmp_path))                                      # an earlier answer on screen
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    browser.find_element("id", "file").send_keys(str(bad))
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.state") == "error", "the error")
    error = browser.find_element("id", "error")
    assert error.is_displayed() and "Unknown image file format" in error.text, error.text
    assert "broken.png" in browser.find_element("id", "given-name").text
    assert not _visible(browser, "result") and not _visible(browser, "image-result")   # no stale answer beside it
    where = browser.execute_script(
        "const e = document.getElementById('error').getBoundingClientRect();"
        "const i = document.querySelector('.input-panel').getBoundingClientRect();"
        "return [e.left >= i.right, e.top < i.bottom, e.bottom <= window.innerHeight,"
        " document.getElementById('error').closest('.result-panel') !== null];")
    assert where == [True, True, True, True], where
