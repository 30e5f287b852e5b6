"""The web page end to end: app.py served on a free local port with a tiny checkpoint, driven in headless Chromium
(Debian's package, through playwright's client; no browser is downloaded). Screenshots go to test-artifacts/browser/."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import INVALID_AUDIO
from playwright.sync_api import sync_playwright

from mixingbuddy.models.tiny import build_tiny_model_and_processor, save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """app.py on a free port with a tiny random checkpoint and an upload limit of 2 MB; yields its address."""
    model = save_tiny_checkpoint(tmp_path_factory.mktemp("app") / "model")
    port = free_port()
    command = [sys.executable, str(REPO / "app.py"), "--model", str(model), "--port", str(port), "--max-megabytes", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.5)
    else:
        pytest.fail("app.py did not start serving within two minutes")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page of the app."""
    page = browser.new_page(viewport={"width": 1200, "height": 1300})
    page.goto(server)
    page.wait_for_selector("input[type=file]", state="attached", timeout=60_000)
    yield page
    page.close()


def critique_on_the_page(page, path: Path, anchor: str) -> None:
    page.set_input_files("input[type=file]", str(path))
    page.get_by_label(anchor, exact=True).first.check()
    page.wait_for_timeout(1000)  # the upload settles
    page.get_by_role("button", name="Critique").click()


@needs_chromium
def test_a_mix_gets_advice_per_window_a_verdict_and_a_timeline(page, tmp_path):
    mix = tmp_path / "my mix.flac"  # 35 s, under the test server's 2 MB limit
    audio = (0.1 * np.random.default_rng(0).standard_normal((35 * 16000, 1))).astype(np.float32)
    audio[10 * 16000 : 21 * 16000] = 0  # a silent stretch: the window 0:10–0:20 is too quiet to judge
    sf.write(mix, audio, 16000)
    critique_on_the_page(page, mix, "drums")
    page.wait_for_selector("#verdict h3", timeout=120_000)
    verdict = page.inner_text("#verdict")
    assert verdict.startswith("Verdict:") and "window" in verdict
    table = page.inner_text("#windows")
    assert "0:00" in table and "0:25" in table and "too quiet to judge" in table
    assert page.locator("img, canvas, svg").count() > 0
    page.screenshot(path=str(ARTIFACTS / "critique.png"), full_page=True)


@needs_chromium
def test_a_file_that_is_not_audio_gets_a_readable_message(page, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("these are notes, not samples\n" * 50)
    critique_on_the_page(page, fake, "vocals")
    page.wait_for_selector("#verdict :text('Cannot critique this file')", timeout=60_000)
    message = page.inner_text("#verdict")
    assert "Cannot read notes.wav as audio" in message and "Traceback" not in message
    page.screenshot(path=str(ARTIFACTS / "not_audio.png"), full_page=True)


@needs_chromium
def test_an_upload_over_the_size_limit_gets_a_readable_message(page, tmp_path):
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros((20 * 24000, 2), dtype=np.float32), 24000, subtype="FLOAT")  # 3.8 MB: over 2 MB
    critique_on_the_page(page, big, "vocals")
    page.wait_for_selector("#verdict :text('Cannot critique this file')", timeout=60_000)
    message = page.inner_text("#verdict")
    assert "big.wav is 3.8 MB; this page takes files of up to 2 MB" in message and "Traceback" not in message
    page.screenshot(path=str(ARTIFACTS / "too_large.png"), full_page=True)


def test_without_a_model_the_page_says_how_to_make_one(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "app.py")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "app.py: error: no model: run `make demo` to make demo_out/model, or pass --model DIR"


@pytest.mark.parametrize("name", ["half_second.wav", "corrupt.wav", "text.wav", "empty.wav", "nan.wav"])
def test_every_bad_upload_gets_a_message_naming_it(tmp_path, name):
    """The page's code on the bad files of the command-line tests (no browser needed)."""
    import app

    model, processor = build_tiny_model_and_processor()
    make, message = INVALID_AUDIO[name]
    path = tmp_path / name
    make(path)
    markdown, rows, figure = app.critique_upload(model, processor, "tiny", str(path), "vocals", ["bass", "vocals"])
    assert markdown.startswith("### Cannot critique this file") and message.replace(str(path), name) in markdown
    assert str(tmp_path) not in markdown and rows == [] and figure is None


def test_an_upload_longer_than_the_page_takes_is_refused(tmp_path):
    import app

    model, processor = build_tiny_model_and_processor()
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros((21 * 60 * 8000, 1), dtype=np.int16), 8000, subtype="PCM_16")
    markdown, _, _ = app.critique_upload(model, processor, "tiny", str(path), "vocals", None)
    assert "long.wav lasts 21:00; this page takes songs of up to 20 minutes" in markdown
