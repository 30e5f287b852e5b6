"""The web page end to end: app.py served on a free local port with a tiny checkpoint, driven in headless Chromium
(Debian's package, through playwright's client; no browser is downloaded). Screenshots go to test-artifacts/browser/.
The page's own code is tested without a browser too: bad uploads, and the stem files a model that hears more than the
mix needs."""

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
from helpers import INVALID_AUDIO, write_song
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
    yield from serve(upload_folder, "--model", str(model), "--max-megabytes", "2")


@pytest.fixture(scope="module")
def anchor_server(tmp_path_factory):
    """app.py on a free port with a tiny random checkpoint that hears the mix and the anchor stem: its address."""
    model = save_tiny_checkpoint(tmp_path_factory.mktemp("app") / "model", audio_inputs="mix+anchor")
    yield from serve(tmp_path_factory.mktemp("anchor_uploads"), "--model", str(model))


def serve(upload_folder: Path, *flags: str):
    """Start app.py with `flags` (--model DIR or --study DIR, ...) on a free port, yield its address once it serves,
    and stop it."""
    port = free_port()
    command = [sys.executable, str(REPO / "app.py"), "--port", str(port), *flags]
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
    yield from open_page(browser, server)


@pytest.fixture
def anchor_page(browser, anchor_server):
    """A fresh page of the app with a model that hears the mix and the anchor stem."""
    yield from open_page(browser, anchor_server)


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1200, "height": 1300})
    page.goto(url)
    page.wait_for_selector("input[type=file]", state="attached", timeout=60_000)
    yield page
    page.close()


def critique_on_the_page(page, path: Path, anchor: str) -> None:
    page.set_input_files("#mix-upload input[type=file]", str(path))
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
@pytest.mark.slow
def test_a_mix_and_its_anchor_stem_get_a_critique_from_a_model_that_hears_both(anchor_page, tmp_path):
    """The demo's kind of song (tones and noise per stem, the drums raised by 9 dB) and its vocals stem alone."""
    page = anchor_page
    write_song(tmp_path / "stems", 44100, 2, seed=0, seconds=40)
    stems = {path.stem: sf.read(path, dtype="float32")[0] for path in (tmp_path / "stems").glob("*.wav")}
    mix = tmp_path / "demo song.wav"
    sf.write(mix, sum(stems.values()) + (10 ** (9 / 20) - 1) * stems["drums"], 44100, subtype="PCM_16")
    assert "This model hears the mix and the anchor stem: upload the anchor stem" in page.inner_text("#audio-inputs")
    critique_on_the_page(page, mix, "vocals")
    page.wait_for_selector("#verdict :text('Cannot critique yet')", timeout=60_000)
    assert "upload the anchor stem alone as well" in page.inner_text("#verdict")
    page.set_input_files("#stem-upload input[type=file]", str(tmp_path / "stems" / "vocals.wav"))
    page.wait_for_timeout(1000)  # the upload settles
    page.get_by_role("button", name="Critique").click()
    page.wait_for_selector("#verdict h3:text('Verdict:')", timeout=120_000)
    assert "Heard beside the mix: vocals.wav" in page.inner_text("#verdict")
    assert page.inner_text("#windows").count("0:") >= 8  # four windows, a start and an end each
    page.screenshot(path=str(ARTIFACTS / "critique_anchor.png"), full_page=True)


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
    _, processor = build_tiny_model_and_processor()
    markdown, rows, figure = app.critique_upload(None, processor, "tiny", str(path), "vocals", stems,
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


def test_a_model_that_hears_the_anchor_asks_for_it_and_refuses_one_that_does_not_fit_the_mix(tmp_path):
    import app

    model, processor = build_tiny_model_and_processor(audio_inputs="mix+anchor")
    folder = tmp_path / "gradio"
    mix, anchor, other_rate = folder / "1" / "mix.wav", folder / "2" / "vocals.wav", folder / "3" / "vocals.wav"
    for path, rate in ((mix, 24000), (anchor, 24000), (other_rate, 16000)):
        path.parent.mkdir(parents=True)
        sf.write(path, 0.1 * np.random.default_rng(0).standard_normal((12 * rate, 1)), rate)

    def shown(stem_uploads):
        return app.critique_upload(model, processor, "tiny", str(mix), "vocals", ["bass", "vocals"],
                                   upload_folder=str(folder), stem_uploads=stem_uploads)

    assert shown(None)[0] == f"### Cannot critique yet\n\n{app.HEARS['mix+anchor']}"
    markdown, rows, figure = shown(str(other_rate))
    assert markdown == ("### Cannot critique this file\n\nStem file vocals.wav is at 16000 Hz but the mix mix.wav is "
                        "at 24000 Hz; export the stems and the mix at the same rate.") and rows == [] and figure is None
    assert not other_rate.exists() and mix.exists()  # the refused upload is deleted, the mix it was compared with kept
    markdown, rows, _ = shown(str(anchor))
    assert markdown.startswith("### Verdict:") and "- Heard beside the mix: vocals.wav" in markdown and len(rows) == 2


def test_a_model_that_hears_every_stem_takes_the_stems_uploaded_as_the_stems_in_the_mix(tmp_path):
    import app

    model, processor = build_tiny_model_and_processor(audio_inputs="stems")
    write_song(tmp_path, 16000, 1, seed=1, seconds=12)
    stems = [str(tmp_path / f"{stem}.wav") for stem in ("bass", "drums", "vocals")]
    mix = tmp_path / "mix.wav"
    sf.write(mix, sum(sf.read(path)[0] for path in stems), 16000)

    def shown(stem_uploads):
        return app.critique_upload(model, processor, "tiny", str(mix), "drums", None, stem_uploads=stem_uploads)

    assert shown([])[0] == f"### Cannot critique yet\n\n{app.HEARS['stems']}"
    markdown, rows, _ = shown(stems)
    assert markdown.startswith("### Verdict:") and "Heard beside the mix: bass.wav, drums.wav, vocals.wav" in markdown
    assert "other" not in markdown and len(rows) == 2
    markdown, _, _ = shown([*stems, str(tmp_path / "other.wav"), str(mix)])
    assert markdown == ("### Cannot critique this file\n\nThe upload of stems holds files not named after a stem, "
                        "mix.wav: name each stem file after its stem (bass.wav, drums.wav, other.wav, vocals.wav), and "
                        "leave out other files.")
