"""A real headless Chromium uploads a photo to ``leve serve`` and gets its depth map.

Uses Debian's chromium and chromedriver (installed by .ci/run; nothing is downloaded). Skipped
only where they are not installed and CI is unset; in CI a missing browser fails the test.
The screenshot goes to pytest's tmp dir and is copied to ``reports/serve_screenshot.png``.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from leve.datasets.synthetic import render_sample
from tests.serve.helpers import image_bytes, live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPORT = Path(__file__).resolve().parents[2] / "reports" / "serve_screenshot.png"
WAIT_S = 25


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = f"no headless browser: {', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must install it (.ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1300", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served_full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app with a checkpoint at the thesis's 480x640 input, so the timing is a real one."""
    import torch

    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model
    from leve.serve.app import create_app
    from leve.serve.config import Config

    torch.manual_seed(0)
    model = create_model("leve", max_depth=10.0)
    with torch.no_grad():
        model.decoder.blocks[-1].out.bias.fill_(5.0)
    path = save_checkpoint(tmp_path_factory.mktemp("browser") / "student.safetensors", model, "leve", 10.0,
                           resolution=(480, 640))
    with live_server(create_app(Config(checkpoint=path, device="cpu", samples=2))) as url:
        yield url


def _wait_state(driver, states: tuple[str, ...]) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-state") in states)
    return driver.find_element("tag name", "body").get_attribute("data-state")


@pytest.mark.slow
def test_upload_shows_depth_and_downloads(browser, served_full, tmp_path):
    rgb, _ = render_sample(0, "test", 7, 240, 320)
    photo = tmp_path / "room.png"  # 320x240: predicted at 480x640 and resized back
    photo.write_bytes(image_bytes(rgb))
    browser.get(served_full)
    assert browser.find_element("id", "model-name").text == "leve"

    start = time.perf_counter()
    browser.find_element("id", "file").send_keys(str(photo))
    state = _wait_state(browser, ("done", "error"))
    seconds = time.perf_counter() - start
    assert state == "done", browser.find_element("id", "error").text

    depth_size = browser.execute_script(
        "const i = document.getElementById('depth-image'); return [i.naturalWidth, i.naturalHeight, i.complete];")
    assert depth_size == [320, 240, True]
    assert browser.find_element("id", "depth-image").is_displayed()
    ticks = [t.text for t in browser.find_elements("css selector", "#ticks .tick")]
    assert len(ticks) >= 2 and all(t.endswith(" m") for t in ticks)
    link = browser.find_element("id", "download-png16")
    assert link.is_displayed() and link.get_attribute("download") == "room_depth16.png"
    mm = np.asarray(Image.open(io.BytesIO(requests.get(link.get_attribute("href"), timeout=30).content)))
    assert mm.dtype == np.uint16 and mm.shape == (240, 320)
    assert browser.find_element("id", "download-npy").get_attribute("download") == "room_depth.npy"
    ply = browser.find_element("id", "download-ply")  # metric model: the point cloud is offered too
    assert ply.is_displayed() and ply.get_attribute("download") == "room.ply"
    head = requests.get(ply.get_attribute("href"), timeout=30).content[:400]
    assert head.startswith(b"ply\nformat binary_little_endian 1.0\n") and b"element vertex 76800\n" in head
    assert "assumed 60 deg horizontal field of view" in browser.find_element("id", "intrinsics").text

    shot = tmp_path / "serve_screenshot.png"
    assert browser.save_screenshot(str(shot))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, REPORT)
    inference = browser.find_element("id", "inference-ms").text
    print(f"\nupload to result in headless Chromium: {seconds:.3f} s (model inference {inference} ms); "
          f"screenshot {REPORT}")


@pytest.mark.slow
def test_refused_upload_shows_the_message(browser, served, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    browser.get(served)
    browser.find_element("id", "file").send_keys(str(fake))
    assert _wait_state(browser, ("done", "error")) == "error"
    error = browser.find_element("id", "error")
    assert error.is_displayed() and error.text == "notes.png: not a JPEG or PNG image"
    assert browser.find_element("id", "result").get_attribute("hidden") is not None
