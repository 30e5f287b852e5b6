"""The web page end to end: app.py served on a free local port with a tiny checkpoint, driven in headless Chromium
(Debian's package, through playwright's client; no browser is downloaded). Screenshots go to test-artifacts/browser/."""

import argparse
import os
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
def upload_folder(tmp_path_factory) -> Path:
    """Where the test server's Gradio keeps uploads (GRADIO_TEMP_DIR)."""
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def server(tmp_path_factory, upload_folder):
    """app.py on a free port with a tiny random checkpoint and an upload limit of 2 MB; yields its address."""
    model = save_tiny_checkpoint(tmp_path_factory.mktemp("app") / "model")
    port = free_port()
    command = [sys.executable, str(REPO / "app.py"), "--model", str(model), "--port", str(port), "--max-megabytes", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "GRADIO_TEMP_DIR": str(upload_folder)})
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
@pytest.mark.slow
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
@pytest.mark.slow
def test_a_file_that_is_not_audio_gets_a_readable_message(page, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("these are notes, not samples\n" * 50)
    critique_on_the_page(page, fake, "vocals")
    page.wait_for_selector("#verdict :text('Cannot critique this file')", timeout=60_000)
    message = page.inner_text("#verdict")
    assert "Cannot read notes.wav as audio" in message and "Traceback" not in message
    page.screenshot(path=str(ARTIFACTS / "not_audio.png"), full_page=True)


@needs_chromium
def test_an_upload_over_the_size_limit_gets_a_readable_message_and_is_deleted(page, tmp_path, upload_folder):
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros((20 * 24000, 2), dtype=np.float32), 24000, subtype="FLOAT")  # 3.8 MB: over 2 MB
    critique_on_the_page(page, big, "vocals")
    page.wait_for_selector("#verdict :text('Cannot critique this file')", timeout=60_000)
    message = page.inner_text("#verdict")
    assert "big.wav is 3.8 MB; this page takes files of up to 2 MB" in message and "Traceback" not in message
    assert not list(upload_folder.rglob("big.wav")) and big.exists()  # Gradio's copy is gone, the user's file kept
    page.wait_for_selector(":text('Drop File Here')", timeout=10_000)  # and the upload box is empty again
    page.screenshot(path=str(ARTIFACTS / "too_large.png"), full_page=True)


@pytest.mark.slow
def test_without_a_model_the_page_says_how_to_make_one(tmp_path):
    environ = {name: value for name, value in os.environ.items() if name != "MIXINGBUDDY_MODEL"}
    done = subprocess.run([sys.executable, str(REPO / "app.py")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=environ)
    assert done.returncode == 2
    assert done.stderr.strip() == ("app.py: error: no model: run `make demo` to make demo_out/model, or pass --model DIR "
                                   "(or set MIXINGBUDDY_MODEL)")


@pytest.mark.parametrize(("flags", "environ", "address"), [
    ({}, {}, ("127.0.0.1", 7860)),
    ({}, {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"}, ("0.0.0.0", 7861)),  # what a Space sets
    ({"host": "localhost", "port": 8000}, {}, ("localhost", 8000)),
    ({"host": "localhost", "port": 8000}, {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"},
     ("localhost", 8000)),
    ({"port": 8000}, {"GRADIO_SERVER_NAME": "0.0.0.0"}, ("0.0.0.0", 8000)),
])
def test_the_page_listens_where_the_flags_else_the_environment_say(flags, environ, address):
    import app

    assert app.server_address(argparse.Namespace(**{"host": None, "port": None, **flags}), environ) == address


@pytest.mark.parametrize(("port", "environ", "message"), [
    (None, {"GRADIO_SERVER_PORT": "abc"}, "GRADIO_SERVER_PORT must be a port number (1 to 65535), got 'abc'"),
    (8000, {"GRADIO_SERVER_PORT": ""}, "GRADIO_SERVER_PORT must be a port number (1 to 65535), got ''"),
    (70000, {}, "--port must be a port number (1 to 65535), got 70000"),
])
def test_a_port_that_is_not_a_port_number_is_refused(port, environ, message):
    import app

    with pytest.raises(ValueError) as refused:
        app.server_address(argparse.Namespace(host=None, port=port), environ)
    assert str(refused.value) == message


@pytest.mark.slow
def test_a_bad_gradio_server_port_gets_one_line_not_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "app.py")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "GRADIO_SERVER_PORT": "abc"})
    assert done.returncode == 2
    assert done.stderr == "app.py: error: GRADIO_SERVER_PORT must be a port number (1 to 65535), got 'abc'\n"


def test_mixingbuddy_model_is_the_default_model_and_model_overrides_it(tmp_path, monkeypatch, capsys):
    import app

    monkeypatch.setenv("MIXINGBUDDY_MODEL", str(tmp_path / "from_env"))
    assert app.main([]) == 2
    assert f"Model folder {tmp_path / 'from_env'} does not exist" in capsys.readouterr().err
    assert app.main(["--model", str(tmp_path / "from_flag")]) == 2
    assert f"Model folder {tmp_path / 'from_flag'} does not exist" in capsys.readouterr().err


def test_a_port_in_use_gets_one_line_naming_it(tmp_path, capsys):
    import app

    model = save_tiny_checkpoint(tmp_path / "model")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert app.main(["--model", str(model), "--host", "127.0.0.1", "--port", str(port)]) == 2
    assert capsys.readouterr().err == (f"app.py: error: cannot listen on 127.0.0.1:{port}: the port is in use or the "
                                       "host is not this machine's; pass another --port or --host\n")


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
    markdown, _, _ = app.critique_upload(model, processor, "tiny", str(path), "vocals", ["bass", "vocals"])
    assert "long.wav lasts 21:00; this page takes songs of up to 20 minutes" in markdown


@pytest.mark.parametrize(("stems", "message"), [
    ([], "### Cannot critique yet\n\nTick the stems in the mix, the anchor (vocals) among them."),
    (["bass"], "### Cannot critique this file\n\nAnchor stem 'vocals' is not among the stems present ['bass']."),
])
def test_stems_that_cannot_be_used_get_a_message_and_no_critique(tmp_path, stems, message):
    import app

    path = tmp_path / "gradio" / "0123abcd" / "mix.wav"
    path.parent.mkdir(parents=True)
    sf.write(path, np.full((12 * 8000, 1), 0.1), 8000)
    markdown, rows, figure = app.critique_upload(None, None, "tiny", str(path), "vocals", stems,
                                                 upload_folder=str(tmp_path / "gradio"))  # no model: none is run
    assert markdown == message and rows == [] and figure is None
    assert path.exists()  # kept: the same upload is critiqued once the stems are ticked


@pytest.mark.parametrize(("name", "max_megabytes", "message"), [
    ("text.wav", 200, "Cannot read text.wav as audio"),
    ("nan.wav", 200, "contains NaN or infinite samples"),
    ("big.wav", 0.1, "big.wav is 1.2 MB; this page takes files of up to 0.1 MB"),
])
def test_a_rejected_upload_is_deleted_from_the_upload_folder_and_a_users_own_file_kept(tmp_path, name, max_megabytes,
                                                                                         message):
    import app

    model, processor = build_tiny_model_and_processor()
    make = {"big.wav": lambda p: sf.write(p, np.zeros((12 * 24000, 1), dtype=np.float32), 24000, subtype="FLOAT"),
            **{bad: made for bad, (made, _) in INVALID_AUDIO.items()}}[name]
    folder = tmp_path / "gradio"
    uploaded, own = folder / "0123abcd" / name, tmp_path / "mine" / name
    for path in (uploaded, own):
        path.parent.mkdir(parents=True)
        make(path)
    (folder / "other").mkdir()
    for path in (uploaded, own):
        markdown, rows, figure = app.critique_upload(model, processor, "tiny", str(path), "vocals", ["bass", "vocals"],
                                                     max_megabytes, upload_folder=str(folder))
        assert markdown.startswith("### Cannot critique this file") and message in markdown
    assert not uploaded.parent.exists() and (folder / "other").is_dir()  # the upload and its folder, nothing else
    assert own.exists()
