"""The procedural corpus: MUSDB18HQ layout, exact mixtures, determinism, silent sections, level spread, errors."""

import hashlib
import json
import re

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from dataset_builder import synth
from dataset_builder.synth import STEMS, synthesize_corpus
from dataset_builder.synth import corpus as synth_corpus

SONGS, SECONDS, SEED = 3, 30.0, 0
FILES = tuple(f"{name}.wav" for name in (*STEMS, "mixture"))


def digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def rms_dbfs(audio):
    return 20 * np.log10(max(float(np.sqrt(np.mean(np.square(audio)))), 1e-12))


def loudness_lufs(audio, rate):
    """Integrated loudness (ITU-R BS.1770) of a written stem [samples] or [samples, channels], by pyloudnorm."""
    return pyloudnorm.Meter(rate).integrated_loudness(audio)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synthesize_corpus(tmp_path_factory.mktemp("synth") / "corpus", SONGS, SECONDS, SEED, progress=False)


@pytest.fixture(scope="module")
def meta(corpus):
    return json.loads((corpus / "corpus.json").read_text())


def test_layout_and_split(corpus, meta):
    assert sorted(p.name for p in corpus.iterdir()) == ["corpus.json", "test", "train"]
    assert not list(corpus.parent.glob(".*incomplete"))
    train, test = sorted((corpus / "train").iterdir()), sorted((corpus / "test").iterdir())
    assert (len(train), len(test)) == (2, 1)  # default: a fifth of the songs, at least one, are test
    names = [t["track"] for t in meta["tracks"]]
    assert len(set(names)) == SONGS and all(re.fullmatch(r"[A-Z][A-Za-z ]+ - [A-Z][A-Za-z ]+", n) for n in names)
    assert [t["split"] for t in meta["tracks"]] == ["train", "train", "test"]
    for record in meta["tracks"]:
        assert sorted(p.name for p in (corpus / record["split"] / record["track"]).iterdir()) == sorted(FILES)
    assert meta["seed"] == SEED and meta["stems"] == list(STEMS)


def test_wav_format_and_exact_mixture(corpus, meta):
    for record in meta["tracks"]:
        folder = corpus / record["split"] / record["track"]
        for name in FILES:
            info = sf.info(folder / name)
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (44100, 2, "PCM_16", SECONDS * 44100)
        stems = [sf.read(folder / f"{stem}.wav", dtype="int16")[0].astype(np.int32) for stem in STEMS]
        mixture = sf.read(folder / "mixture.wav", dtype="int16")[0].astype(np.int32)
        np.testing.assert_array_equal(mixture, np.sum(stems, axis=0))
        assert np.abs(mixture).max() <= synth.PEAK_CEILING * 32768 + 4  # peak-safe: at most −1 dBFS
        assert record["song_gain_db"] <= 0


def test_same_seed_is_byte_identical_and_other_seeds_differ(corpus, tmp_path):
    again = synthesize_corpus(tmp_path / "again", SONGS, SECONDS, SEED, progress=False)
    assert digest(again) == digest(corpus)
    other = digest(synthesize_corpus(tmp_path / "other", 1, 10, SEED + 1, progress=False))
    assert not set(other.values()) & set(digest(corpus).values())


def test_stems_fall_silent_in_some_ten_second_windows(corpus, meta):
    silent_and_active = []
    for record in meta["tracks"]:
        folder = corpus / record["split"] / record["track"]
        for stem in STEMS:
            audio, rate = sf.read(folder / f"{stem}.wav")
            levels = [rms_dbfs(audio[start : start + 10 * rate]) for start in range(0, len(audio), 10 * rate)]
            if min(levels) < -45 and max(levels) > -45:
                silent_and_active.append((record["track"], stem))
        # Songs of 30 s or more open with an intro of at least 10 s without vocals.
        assert record["silent"]["vocals"][0][0] == 0 and record["silent"]["vocals"][0][1] >= 10
    assert len(silent_and_active) >= SONGS


def test_recorded_levels_match_the_audio_and_vary_across_songs(corpus, meta):
    for record in meta["tracks"]:
        folder = corpus / record["split"] / record["track"]
        for stem in STEMS:
            audio, rate = sf.read(folder / f"{stem}.wav")
            assert_level_set_then_limited(record, stem)
            assert loudness_lufs(audio, rate) == pytest.approx(record["loudness_lufs"][stem], abs=0.1)
    balances = [record["loudness_lufs"]["vocals"] - record["loudness_lufs"]["drums"] for record in meta["tracks"]]
    assert max(balances) - min(balances) > 0.5
    for stem in STEMS:
        assert len({record["levels_db"][stem] for record in meta["tracks"]}) == SONGS


def test_single_song_goes_to_train(tmp_path):
    out = synthesize_corpus(tmp_path / "one", 1, 10, SEED, progress=False)
    assert len(list((out / "train").iterdir())) == 1 and not list((out / "test").iterdir())


def test_level_spread_bounds_each_stems_drawn_level(tmp_path):
    out = synthesize_corpus(tmp_path / "narrow", 3, 10, SEED, level_spread_db=0.5, progress=False)
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["level_spread_db"] == 0.5
    levels = [v for track in meta["tracks"] for v in track["levels_db"].values()]
    assert max(abs(v) for v in levels) <= 0.5 and len(set(levels)) > 1


def test_mono_corpus_at_24k_is_the_stereo_songs_downmix_with_their_levels(tmp_path):
    """`channels=1` (the demo's form: what the stem cache reads in place) writes the same songs in mono, each stem at
    its recorded level and the mixture still the exact sum."""
    out = synthesize_corpus(tmp_path / "mono", 1, 10, SEED, sample_rate=24000, channels=1, progress=False)
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["channels"] == 1 and meta["sample_rate"] == 24000
    record = meta["tracks"][0]
    folder = out / record["split"] / record["track"]
    for name in FILES:
        info = sf.info(folder / name)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (24000, 1, "PCM_16", 10 * 24000)
    stems = [sf.read(folder / f"{stem}.wav", dtype="int16")[0].astype(np.int32) for stem in STEMS]
    np.testing.assert_array_equal(sf.read(folder / "mixture.wav", dtype="int16")[0], np.sum(stems, axis=0))
    for stem in STEMS:
        audio, rate = sf.read(folder / f"{stem}.wav")
        assert loudness_lufs(audio, rate) == pytest.approx(record["loudness_lufs"][stem], abs=0.1)
        assert_level_set_then_limited(record, stem)


def assert_level_set_then_limited(record: dict, stem: str):
    """A stem's recorded level is the level it was set to (nominal + the song's draw + the song gain), lowered by no
    more than the bus limiter's reduction (exactly that level when the song has no limiter)."""
    expected = synth.NOMINAL_LUFS[stem] + record["levels_db"][stem] + record["song_gain_db"]
    bus = record["mixing"] and record["mixing"]["bus"]
    reduction = bus["reduction_db"] if bus else 0.0
    assert expected - reduction - 0.02 <= record["loudness_lufs"][stem] <= expected + 0.02


def test_a_silent_stem_records_no_level(monkeypatch):
    """A stem that renders digital silence where its plan says it plays has no loudness: None, not -inf (which
    corpus.json could not hold), with or without the mixing chain; it is left silent."""
    from dataset_builder.synth.mixing import plan_mixing
    from dataset_builder.synth.plan import plan_song

    monkeypatch.setitem(synth_corpus.RENDERERS, "vocals", lambda plan, rng, n, rate: np.zeros((2, n), np.float32))
    plan = plan_song(np.random.default_rng(0), "Song", "train", 10.0)
    for mixing in (None, plan_mixing(np.random.default_rng(1))):
        pcm, _, levels = synth_corpus.render_song(plan, np.random.SeedSequence(2), 24000 * 10, 24000, mixing=mixing)
        assert levels["vocals"] is None and not pcm["vocals"].any()
        assert all(isinstance(levels[stem], float) for stem in STEMS if stem != "vocals")


def test_without_the_mixing_chain_levels_are_exactly_the_drawn_ones(tmp_path):
    out = synthesize_corpus(tmp_path / "dry", 2, 10, SEED, mixing_chain=False, progress=False)
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["mixing_chain"] is False
    for record in meta["tracks"]:
        assert record["mixing"] is None
        for stem in STEMS:
            expected = synth.NOMINAL_LUFS[stem] + record["levels_db"][stem] + record["song_gain_db"]
            assert record["loudness_lufs"][stem] == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"songs": 0}, "songs"),
        ({"songs": 2.5}, "songs"),
        ({"seconds": 9.9}, "seconds"),
        ({"seconds": float("nan")}, "seconds"),
        ({"seed": -1}, "seed"),
        ({"test_songs": 3}, "test_songs"),
        ({"sample_rate": 8000}, "sample_rate"),
        ({"level_spread_db": -1.0}, "level_spread_db"),
        ({"channels": 3}, "channels"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, name):
    arguments = {"out_dir": tmp_path / "out", "songs": 2, "seconds": 10, "seed": 0, "progress": False} | kwargs
    with pytest.raises(ValueError, match=rf"^{name} "):
        synthesize_corpus(**arguments)
    assert not list(tmp_path.iterdir())


def test_non_empty_out_dir_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="out"):
        synthesize_corpus(out, 1, 10, SEED, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["keep.txt"]


def test_empty_out_dir_is_filled(tmp_path):
    (tmp_path / "out").mkdir()
    assert (synthesize_corpus(tmp_path / "out", 1, 10, SEED, progress=False) / "corpus.json").is_file()


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail_on_second_song(plan, *args):
        if plan.track != synth.track_names(SEED, 2)[0]:
            raise RuntimeError("boom")
        return render_song(plan, *args)

    render_song = synth_corpus.render_song
    monkeypatch.setattr(synth_corpus, "render_song", fail_on_second_song)
    with pytest.raises(RuntimeError, match="boom"):
        synthesize_corpus(tmp_path / "out", 2, 10, SEED, progress=False)
    assert not list(tmp_path.iterdir())
