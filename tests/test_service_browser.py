"""The web page at / in a real browser (Playwright + Chromium): upload, verdict, error, narrow screen.

Skipped, with the reason, where Playwright or a Chromium cannot be found. Install either
``pip install playwright`` with Debian's ``apt-get install chromium`` (used through its path),
or ``pip install playwright && playwright install chromium``. The screenshot is kept in the
test's temporary folder; with ``ASRGUARD_SCREENSHOT=path.png`` it is also written there.
"""

import os
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")

from asrguard.service.app import create_app  # noqa: E402
from asrguard.service.limits import Limits  # noqa: E402
from asrguard.service.server import ServerThread  # noqa: E402
from _detect_helpers import clips, fitted_detector, tiny_recognizer  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
SYSTEM_CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def browser():
    executable = next((path for path in map(shutil.which, SYSTEM_CHROMIUM) if path), None)
    with sync_api.sync_playwright() as pw:
        try:
            # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start; the fake
            # device and UI give a microphone (a beeping one) without a permission prompt
            browser = pw.chromium.launch(executable_path=executable, args=[
                "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        except Exception as exc:  # noqa: BLE001 - any launch failure means "no browser here"
            pytest.skip(f"no Chromium could be launched ({str(exc).splitlines()[0][:120]}); install Debian's "
                        "chromium or run `playwright install chromium`")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    det = fitted_detector(tiny_recognizer(tmp_path_factory.mktemp("svc_browser")))
    with ServerThread(create_app(detector=det, limits=Limits(max_seconds=3.0))) as url:
        yield url


def _wav_file(path, x, rate=16000):
    sf.write(path, np.asarray(x, dtype=np.float32), rate, subtype="PCM_16")
    return str(path)


def test_upload_shows_the_verdict_and_a_corrupt_file_shows_an_error(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(server + "/")
    page.set_input_files("#file", _wav_file(tmp_path / "speech.wav", np.tile(clips(1, 5)[0], 3)))
    page.click("#send")
    page.wait_for_selector("#verdict:text-matches('Benign|Adversarial')", timeout=10_000)
    assert "threshold" in page.inner_text("#scoreline")
    assert page.locator("#distinct tbody tr").count() >= 1
    assert page.locator("#chart svg rect").count() == 20  # P^char histogram over distances 0..19
    assert page.locator("#player").is_visible()
    assert not page.locator("#key").is_visible()  # this server needs no API key, so none is asked for
    assert not page.locator("#detector").is_visible()  # one detector: nothing to choose
    page.screenshot(path=str(tmp_path / "service_page.png"), full_page=True)
    if os.environ.get("ASRGUARD_SCREENSHOT"):
        page.screenshot(path=os.environ["ASRGUARD_SCREENSHOT"], full_page=True)

    (tmp_path / "broken.wav").write_bytes(b"RIFF1234WAVEjunkjunk")
    page.set_input_files("#file", str(tmp_path / "broken.wav"))
    page.click("#send")
    page.wait_for_selector("#error", state="visible", timeout=10_000)
    message = page.inner_text("#error")
    assert "not a readable audio file" in message and "{" not in message  # a sentence, not raw JSON
    page.close()


def test_page_works_at_a_narrow_width(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 360, "height": 740})
    page.goto(server + "/")
    page.set_input_files("#file", _wav_file(tmp_path / "speech.wav", clips(1, 6)[0]))
    page.click("#send")
    page.wait_for_selector("#verdict:text-matches('Benign|Adversarial')", timeout=10_000)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1  # nothing wider than the screen
    assert page.locator("#send").is_visible() and page.locator("#chart svg").is_visible()
    page.screenshot(path=str(tmp_path / "service_page_narrow.png"), full_page=True)
    page.close()


def test_a_recording_is_converted_to_wav_and_checked(browser, server):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(server + "/")
    page.click("#record")
    page.wait_for_selector("#record:text('Stop')", timeout=5_000)
    page.wait_for_timeout(1200)  # a second of the fake microphone's beeps
    page.click("#record")
    page.wait_for_selector("#status:text('recording.wav')", timeout=5_000)
    page.click("#send")
    page.wait_for_selector("#verdict:text-matches('Benign|Adversarial'), #error:visible", timeout=10_000)
    assert not page.locator("#error").is_visible(), page.inner_text("#error")
    page.close()


@pytest.fixture(scope="module")
def two_detectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("svc_browser_two")
    detectors = {"tones": fitted_detector(tiny_recognizer(folder)), "other": fitted_detector(tiny_recognizer(folder, 1))}
    with ServerThread(create_app(detectors=detectors, limits=Limits(max_seconds=3.0))) as url:
        yield url


def test_the_user_chooses_among_several_detectors(browser, two_detectors, tmp_path):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(two_detectors + "/")
    page.wait_for_selector("#detector", state="visible", timeout=10_000)
    options = page.locator("#detector option")
    assert options.count() == 2 and page.input_value("#detector") == "tones"  # the default is preselected
    assert "CTCRecognizer" in options.nth(1).inner_text()
    page.select_option("#detector", "other")
    page.set_input_files("#file", _wav_file(tmp_path / "speech.wav", clips(1, 5)[0]))
    page.click("#send")
    page.wait_for_selector("#verdict:text-matches('Benign|Adversarial')", timeout=10_000)
    assert "detector other" in page.inner_text("#scoreline")
    page.screenshot(path=str(tmp_path / "service_page_choice.png"), full_page=True)
    page.close()
