"""The demo page in a real browser: `facerefine demo` on a free loopback port, driven by headless
Chromium (Debian's chromium + chromium-driver, through Selenium).

FACEREFINE_DEMO_HEAD picks the head (default: a tiny random one) and FACEREFINE_DEMO_SCREENSHOT
where the screenshot goes (default: the test's temp folder); the README's screenshot is this test
run with a trained head.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from PIL import Image

from facerefine import demo
from facerefine.head_folder import write_head_folder
from facerefine.models.resunet_cbam import ResUNetCBAM

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
# Flags that keep Chromium off the network on a closed machine (no updates, sync or prefetch).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000")
START_TIMEOUT_S = 180   # torch + gradio import and the head's load on a loaded 2-core machine
RESULT_TIMEOUT_S = 120


def _browser() -> tuple[str, str]:
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                    None)
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no Chromium or chromedriver on PATH: `apt-get install -y chromium chromium-driver` "
                    "(.ci/run installs them where it can)")
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(condition, timeout: float, what: str, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`facerefine demo` in a subprocess; yields its URL."""
    head = os.environ.get("FACEREFINE_DEMO_HEAD")
    if not head:
        torch.manual_seed(0)
        unet = ResUNetCBAM(base_channels=4, depth=3)
        torch.nn.init.normal_(unet.head[-1].weight, std=0.1)
        head = str(write_head_folder(tmp_path_factory.mktemp("heads") / "tiny", unet, name="tiny"))
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "demo.log"
    command = [sys.executable, "-c", "from facerefine.cli import main; main()", "demo", "--head", head,
               "--port", str(port), "--backend", "torch", "--device", "cpu"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"facerefine demo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return urllib.request.urlopen(url, timeout=2).status == 200
        except OSError:
            return False

    try:
        _wait_until(up, START_TIMEOUT_S, f"facerefine demo on {url}", poll=0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = _browser()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"  # Selenium Manager's usage statistics (unused here: paths given)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _upload_and_refine(driver, url: str, path: Path) -> str:
    """Open the page, upload one file, click Refine; the status text once it has a verdict."""
    driver.get(url)
    file_input = _wait_until(lambda: _css(driver, "#facerefine-uploads input[type=file]"), 60, "the upload input")[0]
    file_input.send_keys(str(path))
    # The file list shows the stem and the extension on separate lines.
    _wait_until(lambda: path.stem in _css(driver, "#facerefine-uploads")[0].text, 60, f"{path.name} to upload")
    _css(driver, "#facerefine-refine")[0].click()
    return _wait_until(lambda: next((el.text for el in _css(driver, "#facerefine-status")
                                     if "✓" in el.text or "✗" in el.text), None),
                       RESULT_TIMEOUT_S, "a result or an error in the status")


def _natural_sizes(driver) -> list[tuple[int, int]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#facerefine-slider img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).map(i => [i.naturalWidth, i.naturalHeight]);")


def _requested_hosts(driver) -> set[str]:
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            parsed = urlparse(message["params"]["request"]["url"])
            if parsed.scheme in ("http", "https", "ws", "wss"):  # not data:, blob:, chrome:// internals
                hosts.add(parsed.hostname)
    return hosts


def test_portrait_then_corrupt_file_in_chromium(server: str, browser, tmp_path: Path) -> None:
    started = time.perf_counter()
    portrait = demo.portrait()
    with Image.open(portrait) as image:
        size = image.size  # (512, 600)

    status = _upload_and_refine(browser, server, portrait)
    assert f"✓ {portrait.name}: {size[0]} x {size[1]}" in status, status
    # The slider shows before and after, both at the input's size.
    sizes = _wait_until(lambda: (s := _natural_sizes(browser)) and len(s) >= 2 and s, 30, "the slider's images")
    assert {tuple(s) for s in sizes} == {size}, sizes
    # The download is a PNG at the input's exact size.
    link = _wait_until(lambda: [a.get_attribute("href") for a in _css(browser, "#facerefine-downloads a")
                                if a.get_attribute("href")], 30, "the download link")[0]
    with urllib.request.urlopen(link, timeout=10) as response, Image.open(io.BytesIO(response.read())) as out:
        assert (out.format, out.size) == ("PNG", size)
    shot = Path(os.environ.get("FACEREFINE_DEMO_SCREENSHOT") or tmp_path / "demo.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as screenshot:
        assert screenshot.width >= 1000

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")
    status = _upload_and_refine(browser, server, corrupt)
    assert "✗ corrupt.png: not a readable image" in status, status

    # Offline: the page and everything it loaded came from the demo's loopback server.
    assert _requested_hosts(browser) == {"127.0.0.1"}
    print(f"browser test body: {time.perf_counter() - started:.1f} s")
