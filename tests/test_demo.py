"""The demo: the collapse check, the flawed song for the critique, and a smoke run of an installed copy."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mixingbuddy.demo import (
    DEMO_SECONDS,
    DEMO_SONGS,
    DEMO_TEST_ROWS_PER_SONG,
    CritiqueMissedError,
    ModelCollapsedError,
    check_critique,
    check_not_collapsed,
    decoding_table,
    demo_estimate,
    flawed_song,
    heard_beside_the_mix,
)
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

REPO = Path(__file__).resolve().parents[1]


def write_predictions(path, answers):
    with open(path, "w") as f:
        for stem, direction in answers:
            f.write(json.dumps({"parsed": {"stem": stem, "direction": direction}}) + "\n")
    return path


def test_collapse_check_fails_loudly_when_answers_do_not_vary(tmp_path):
    same = write_predictions(tmp_path / "same.jsonl", [("drums", "decrease")] * 50 + [(None, "none")] * 2)
    with pytest.raises(ModelCollapsedError, match="52 clips got only 2 distinct answers"):
        check_not_collapsed(same)
    varied = [(s, d) for s in ("bass", "drums", "vocals") for d in ("increase", "decrease")] + [(None, "none")]
    check_not_collapsed(write_predictions(tmp_path / "varied.jsonl", varied * 5))


def test_critique_check_needs_five_windows_that_lower_the_raised_stem():
    def report(*said):
        return {"windows": [{"stem": stem, "direction": direction} for stem, direction in said]}

    lower, raise_ = ("drums", "decrease"), ("drums", "increase")
    check_critique(report(*[lower] * 5, raise_), "drums")
    with pytest.raises(CritiqueMissedError, match=r"only 4 of 6 windows say to lower them .*'increase drums': 2"):
        check_critique(report(*[lower] * 4, raise_, raise_), "drums")
    with pytest.raises(CritiqueMissedError, match="only 0 of 6"):
        check_critique(report(*[("bass", "decrease")] * 6), "drums")
    check_critique(report(lower, lower), "drums")  # a song shorter than five windows: every window must say it


def test_decoding_table_and_estimate():
    metrics = {"overall": {"n": 10, "joint_accuracy": 0.75, "unparseable_share": 0.0, "impossible_share": 0.1},
               "by_category": {"no_error": {"joint_accuracy": 0.5}}}
    table = decoding_table({"ranked": metrics, "greedy": metrics})
    assert table.splitlines()[2] == "| ranked | 10 | 75.0% | 50.0% | 0.0% | 10.0% |" and len(table.splitlines()) == 4
    minutes, disk = demo_estimate(DEMO_SONGS, DEMO_SECONDS, 800, DEMO_TEST_ROWS_PER_SONG * 120)  # the demo's size
    assert 0 < minutes < 15 and disk < 2e9
    assert demo_estimate(2 * DEMO_SONGS, DEMO_SECONDS, 800, 2000)[1] > 1.9 * disk  # the corpus dominates the disk


def test_flawed_song_raises_one_stem(tmp_path):
    rate, n = 24000, 24000
    rng = np.random.default_rng(0)
    stems = {name: 0.05 * rng.standard_normal((n, 2)).astype(np.float32) for name in STEMS}
    for name, audio in stems.items():
        sf.write(tmp_path / f"{name}.wav", audio, rate, subtype="FLOAT")
    path = flawed_song(tmp_path, tmp_path / "song", "drums", 6.0)
    song, _ = sf.read(path, dtype="float32")
    expected = sum(stems.values()) + (10 ** (6 / 20) - 1) * stems["drums"]
    np.testing.assert_allclose(song, expected, atol=1e-4)
    written = {name: sf.read(path.parent / f"{name}.wav", dtype="float32")[0] for name in STEMS}
    np.testing.assert_allclose(written["drums"], 10 ** (6 / 20) * stems["drums"], atol=1e-6)
    np.testing.assert_allclose(sum(written.values()), song, atol=1e-6)  # the stems the critique hears sum to the mix


def test_flawed_song_is_scaled_as_a_whole_so_that_the_mix_does_not_clip(tmp_path):
    stems = {name: np.full((2400, 1), 0.4, np.float32) for name in STEMS}
    for name, audio in stems.items():
        sf.write(tmp_path / f"{name}.wav", audio, 24000, subtype="FLOAT")
    path = flawed_song(tmp_path, tmp_path / "song", "vocals", 6.0)
    song = sf.read(path, dtype="float32")[0]
    vocals, bass = (sf.read(path.parent / f"{name}.wav", dtype="float32")[0] for name in ("vocals", "bass"))
    assert np.abs(song).max() == pytest.approx(0.99, abs=1e-6)
    assert 20 * np.log10(vocals.max() / bass.max()) == pytest.approx(6.0, abs=1e-4)  # the flaw survives the scaling


def test_the_demo_critique_gives_the_model_the_clips_it_was_trained_on(tmp_path):
    expected = {"mix": {}, "mix+anchor": {"anchor_audio": tmp_path / "song" / "vocals.wav"},
                "stems": {"stems_dir": tmp_path / "song"}}
    for audio_inputs, arguments in expected.items():
        (tmp_path / "processor_config.json").write_text(json.dumps({"audio_inputs": audio_inputs}))
        assert heard_beside_the_mix(tmp_path, tmp_path / "song", "vocals") == arguments
    (tmp_path / "processor_config.json").write_text("{}")  # a folder saved before audio_inputs existed hears the mix
    assert heard_beside_the_mix(tmp_path, tmp_path / "song", "vocals") == {}


@pytest.mark.slow
def test_an_installed_copy_runs_the_demo_from_another_folder(tmp_path):
    """`pip install .` (not editable) and `mixingbuddy demo` elsewhere: the package finds its tiny config as package
    data and runs every stage (a smoke run: two training steps, eight evaluation rows)."""
    source, site, elsewhere = tmp_path / "source", tmp_path / "site", tmp_path / "elsewhere"
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    for name in subprocess.run(listing, cwd=REPO, capture_output=True, text=True, check=True).stdout.splitlines():
        if (REPO / name).is_file():  # a copy of the working tree, so that the build leaves nothing in the checkout
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
               str(site), str(source)]
    subprocess.run(install, check=True, capture_output=True)
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy comes before the editable checkout
    where = subprocess.run(
        [sys.executable, "-c", "import mixingbuddy, mixingbuddy.hub.processing_mixingbuddy as processing_mixingbuddy; "
         "print(mixingbuddy.__file__, mixingbuddy.config_file('tiny.yaml'), processing_mixingbuddy.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )
    assert all(path.startswith(str(site)) for path in where.stdout.split()), where.stdout
    command = [str(site / "bin" / "mixingbuddy"), "demo", "--out", "out", "--songs", "6", "--seconds", "20",
               "--max-steps", "2", "--eval-limit", "8", "--no-checks"]
    done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = elsewhere / "out"
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "vocabulary_mixingbuddy.py").exists()
    assert json.loads((out / "metrics.json").read_text())["overall"]["n"] == 8
    assert json.loads((out / "critique.json").read_text())["windows"]


def test_a_failed_check_is_one_line_and_exit_code_1(monkeypatch, capsys):
    import mixingbuddy.demo
    from mixingbuddy.cli import main

    def missed(*args, **kwargs):
        raise CritiqueMissedError("The critique missed the flaw: only 2 of 7 windows say to lower them.")

    monkeypatch.setattr(mixingbuddy.demo, "run_demo", missed)
    assert main(["demo", "--out", "unused"]) == 1
    err = capsys.readouterr().err
    assert err == "mixingbuddy demo: The critique missed the flaw: only 2 of 7 windows say to lower them.\n"
