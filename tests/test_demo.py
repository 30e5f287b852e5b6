"""The demo's own pieces: the collapse check and the flawed song for the critique."""

import json

import numpy as np
import pytest
import soundfile as sf

from mixingbuddy.demo import ModelCollapsedError, check_not_collapsed, flawed_song


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


def test_flawed_song_raises_one_stem(tmp_path):
    rate, n = 24000, 24000
    rng = np.random.default_rng(0)
    stems = {name: 0.05 * rng.standard_normal((n, 2)).astype(np.float32) for name in ("bass", "drums", "other", "vocals")}
    for name, audio in stems.items():
        sf.write(tmp_path / f"{name}.wav", audio, rate, subtype="FLOAT")
    song, _ = sf.read(flawed_song(tmp_path, tmp_path / "song.wav", "drums", 6.0), dtype="float32")
    expected = sum(stems.values()) + (10 ** (6 / 20) - 1) * stems["drums"]
    np.testing.assert_allclose(song, expected, atol=1e-4)
