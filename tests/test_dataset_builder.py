"""The flawed-mix data set: corpus checks, stem cache, gating, rows, builder, Parquet output, CLI and augmentation."""

from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from dataset_builder import MixingBuddyGain, StemCache, augment_mix, build_dataset, render_flawed_mix
from dataset_builder.corpus import CorpusError, Track, assign_splits
from dataset_builder.examples import expanded_rows
from dataset_builder.gating import GatingThresholds, gate_chunks
from helpers import ROW_FORMS, rows_without_other, write_song

from mixingbuddy.cli import main
from mixingbuddy.hub.vocabulary_mixingbuddy import (
    CATEGORIES,
    INSTRUCTION_TEMPLATES,
    RESPONSE_TEMPLATES,
    STEMS,
    TARGET_STEMS,
)

RATE = 24000
# name -> (source split, sampling rate, channels); every song lasts 21 s: two 10 s chunks, the partial third dropped.
SONGS = {
    "Actions - One Minute Smile": ("train", 44100, 2),  # one of MUSDB's validation tracks
    "Song A": ("train", 22050, 1),
    "Song B": ("train", 44100, 2),  # vocals silent after 10 s: its second chunk is gated out
    "Song C": ("train", 48000, 1),
    "Test X": ("test", 44100, 2),
    "Test Y": ("test", 24000, 1),
}
KEPT_CHUNKS = {"train": 5, "validation": 2, "test": 4}


def write_corpus(root: Path, songs=SONGS) -> Path:
    for seed, (name, (split, rate, channels)) in enumerate(songs.items()):
        write_song(root / split / name, rate, channels, seed, silent_vocals_after=10.0 if name == "Song B" else None)
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A corpus, its stem cache and the expanded data set built once with the CLI defaults (num_proc 1)."""
    root = tmp_path_factory.mktemp("mixingbuddy_data")
    corpus, cache = write_corpus(root / "corpus"), root / "stem_cache"
    stats = build_dataset(corpus, root / "expanded", cache_dir=cache)
    return {"root": root, "corpus": corpus, "cache": cache, "out": root / "expanded", "stats": stats}


@pytest.fixture(scope="module")
def expanded(workspace):
    return datasets.load_dataset(str(workspace["out"]), cache_dir=str(workspace["root"] / "hf_cache"))


def test_expanded_has_30_rows_per_gated_chunk(workspace, expanded):
    assert list(expanded) == ["train", "validation", "test"]
    for split, kept in KEPT_CHUNKS.items():
        assert expanded[split].num_rows == 30 * kept
        gating = workspace["stats"]["splits"][split]["gating"]
        assert gating["kept"] == kept == gating["chunks"] - gating["gated_out"]
    assert workspace["stats"]["splits"]["train"]["gating"] == {
        "chunks": 6,
        "kept": 5,
        "quiet_mixture": 0,
        "quiet_stem": 1,
        "too_few_active_frames": 0,
        "short_tracks": 0,
        "gated_out": 1,
    }
    train = expanded["train"]
    assert ("Song B", 1) not in set(zip(train["track"], train["chunk_index"]))
    per_chunk = Counter(zip(train["track"], train["chunk_index"]))
    assert set(per_chunk.values()) == {30}
    assert len(set(train["uid"])) == train.num_rows


def test_categories_and_stems_are_balanced(expanded):
    for split in expanded.values():
        n = split.num_rows
        assert Counter(split["error_category"]) == {c: n // 5 for c in CATEGORIES}
        assert Counter(split["target_stem"]) == {s: n // 3 for s in TARGET_STEMS}
        assert Counter(split["anchor_stem"]) == {s: n // 3 for s in TARGET_STEMS}
        assert all(t != a for t, a in zip(split["target_stem"], split["anchor_stem"]))


def test_templates_are_used_about_equally():
    rows = [row for chunk in range(100) for row in expanded_rows(0, f"song {chunk % 7}", chunk, 10.0)]
    instruction = Counter(row["instruction_template"] for row in rows)
    assert len(instruction) == len(INSTRUCTION_TEMPLATES)
    assert max(instruction.values()) < 1.2 * len(rows) / 10 and min(instruction.values()) > 0.8 * len(rows) / 10
    for category in CATEGORIES:
        response = Counter(row["response_template"] for row in rows if row["error_category"] == category)
        expected = sum(response.values()) / len(RESPONSE_TEMPLATES[category])
        assert len(response) == len(RESPONSE_TEMPLATES[category]) == 3
        assert min(response.values()) > 0.85 * expected and max(response.values()) < 1.15 * expected


def test_gains_lie_in_their_category_range(expanded):
    for row in expanded["train"]:
        category = CATEGORIES[row["error_category"]]
        assert (row["min_gain_db"], row["max_gain_db"]) == (category.min_gain_db, category.max_gain_db)
        if row["error_category"] == "no_error":
            assert row["gain_db"] == 0.0
        else:
            assert category.min_gain_db <= row["gain_db"] <= category.max_gain_db
        assert row["target_stem"] in row["response"] or row["error_category"] == "no_error"
        assert row["anchor_stem"] in row["instruction"]


def test_render_identity(workspace, expanded):
    cache = StemCache(workspace["corpus"], cache_dir=workspace["cache"])
    for row in expanded["test"].select(range(0, 120, 7)):
        rendered = render_flawed_mix(row, workspace["corpus"], cache_dir=workspace["cache"])
        original = render_flawed_mix({**row, "gain_db": 0.0}, workspace["corpus"], cache_dir=workspace["cache"])
        stems = cache.chunk(row["track"], row["start_sec"], row["end_sec"])  # [4, 240000]
        target = stems[STEMS.index(row["target_stem"])]
        assert rendered.shape == (10 * RATE,) and rendered.dtype == np.float32
        np.testing.assert_allclose(original, stems.sum(axis=0), atol=1e-6)
        np.testing.assert_allclose(rendered - original, (10 ** (row["gain_db"] / 20) - 1) * target, atol=1e-6)


@pytest.mark.parametrize("form", ROW_FORMS)
def test_rows_render_the_same_in_every_form(workspace, expanded, form):
    rows = rows_without_other(expanded["test"].select(range(0, 120, 29)))
    cache = StemCache(workspace["corpus"], cache_dir=workspace["cache"])
    tolerance = 1e-6 if form == "torch" else 0.0  # the torch format rounds gain_db to float32
    for i in range(len(rows)):
        expected = cache.render(rows[i])
        row = ROW_FORMS[form](rows, i)
        np.testing.assert_allclose(cache.render(row), expected, rtol=tolerance, atol=tolerance)
        rendered = render_flawed_mix(row, workspace["corpus"], cache_dir=workspace["cache"])
        np.testing.assert_allclose(rendered, expected, rtol=tolerance, atol=tolerance)
    without_other = cache.render(rows[1])
    assert not np.array_equal(without_other, cache.render({**rows[1], "stems_present": list(STEMS)}))


def test_cache_matches_a_fresh_decode(workspace):
    cache = StemCache(workspace["corpus"], cache_dir=workspace["cache"])
    stems = cache.load("Song A")  # 22.05 kHz mono source
    assert stems.shape == (4, 21 * RATE) and stems.dtype == np.float32
    vocals, rate = sf.read(workspace["corpus"] / "train" / "Song A" / "vocals.wav", dtype="float32")
    assert rate == 22050
    assert (
        np.corrcoef(
            stems[3, 1000:-1000:2],
            np.interp(np.arange(1000, 21 * RATE - 1000, 2) * rate / RATE, np.arange(len(vocals)), vocals),
        )[0, 1]
        > 0.99
    )


def test_splits_hold_whole_tracks(expanded):
    tracks = {split: set(ds["track"]) for split, ds in expanded.items()}
    assert tracks["validation"] == {"Actions - One Minute Smile"}
    assert tracks["test"] == {"Test X", "Test Y"}
    assert tracks["train"] == {"Song A", "Song B", "Song C"}


def test_seeded_validation_fraction_without_musdb_names():
    tracks = {f"song {i:02d}": Track(f"song {i:02d}", "train", Path(".")) for i in range(20)}
    tracks["test song"] = Track("test song", "test", Path("."))
    splits = assign_splits(tracks, seed=3, validation_fraction=0.15)
    assert len(splits["validation"]) == 3 and not set(splits["validation"]) & set(splits["train"])
    assert len(splits["train"]) + len(splits["validation"]) == 20 and splits["test"] == ["test song"]
    assert splits == assign_splits(tracks, seed=3, validation_fraction=0.15)


def test_cli_build_with_two_processes_is_byte_identical(workspace, capsys):
    out = workspace["root"] / "expanded_np2"
    args = ["build-dataset", "--stems", str(workspace["corpus"]), "--out", str(out), "--num-proc", "2"]
    assert main(args + ["--cache-dir", str(workspace["cache"])]) == 0
    assert "test: 120 rows from 4 of 4 chunks" in capsys.readouterr().out
    for split in KEPT_CHUNKS:
        name = f"data/{split}-00000-of-00001.parquet"
        assert (out / name).read_bytes() == (workspace["out"] / name).read_bytes()
    assert (out / "README.md").read_text() == (workspace["out"] / "README.md").read_text()


def test_sampled_builder_draws_one_row_per_chunk_from_the_expanded_rows(workspace, expanded, tmp_path):
    builder = MixingBuddyGain(
        config_name="sampled",
        data_dir=str(workspace["corpus"]),
        cache_dir=str(tmp_path),
        stem_cache_dir=str(workspace["cache"]),
    )
    builder.download_and_prepare()
    sampled = builder.as_dataset()
    assert {split: ds.num_rows for split, ds in sampled.items()} == KEPT_CHUNKS
    expanded_gains = dict(zip(expanded["train"]["uid"], expanded["train"]["gain_db"]))
    for row in sampled["train"]:
        assert expanded_gains[row["uid"]] == row["gain_db"]
    assert builder.gating_stats["train"].gated_out == 1

    build_dataset(workspace["corpus"], tmp_path / "sampled", "sampled", cache_dir=workspace["cache"])
    reloaded = datasets.load_dataset(str(tmp_path / "sampled"), cache_dir=str(tmp_path / "hf_cache"))
    assert list(reloaded) == list(sampled)
    for split in sampled:
        assert reloaded[split].features == sampled[split].features
        assert reloaded[split].to_list() == sampled[split].to_list()


def test_card_reports_counts_and_gating(workspace):
    card = (workspace["out"] / "README.md").read_text()
    assert card.startswith("---\n") and "Config: `expanded`" in card and "configs:" not in card
    assert "| train | 6 | 5 | 1 | 0 | 1 | 0 |" in card
    assert "| test | 120 | 24 | 24 | 24 | 24 | 24 |" in card


def test_folders_of_the_same_name_load_their_own_rows(workspace, tmp_path):
    """`datasets` caches a folder with a `configs:` card by name: two builds called "dataset" must not collide."""
    first = build_dataset(workspace["corpus"], tmp_path / "a" / "dataset", config="expanded", seed=0,
                          cache_dir=workspace["cache"])
    second = build_dataset(workspace["corpus"], tmp_path / "b" / "dataset", config="sampled", seed=0,
                           cache_dir=workspace["cache"])
    for folder, stats in ((tmp_path / "a" / "dataset", first), (tmp_path / "b" / "dataset", second)):
        assert datasets.load_dataset(str(folder))["test"].num_rows == stats["splits"]["test"]["rows"]
    assert first["splits"]["test"]["rows"] == 30 * second["splits"]["test"]["rows"]


def test_changed_stem_file_refreshes_its_cache_entry(tmp_path):
    write_song(tmp_path / "corpus" / "train" / "a", 24000, 1, seed=0, seconds=3)
    write_song(tmp_path / "corpus" / "test" / "b", 24000, 1, seed=1, seconds=3)
    cache = StemCache(tmp_path / "corpus", cache_dir=tmp_path / "cache")
    old_entry, old = cache.ensure("a"), np.array(cache.load("a"))
    write_song(tmp_path / "corpus" / "train" / "a", 24000, 1, seed=5, seconds=3)
    fresh = StemCache(tmp_path / "corpus", cache_dir=tmp_path / "cache")
    assert fresh.ensure("a") != old_entry and not old_entry.exists()
    assert not np.allclose(fresh.load("a"), old)


def test_cache_location_follows_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXINGBUDDY_CACHE_DIR", str(tmp_path / "env_cache"))
    assert StemCache(tmp_path).directory.parent == tmp_path / "env_cache"
    assert StemCache(tmp_path, cache_dir=tmp_path / "arg").directory.parent == tmp_path / "arg"


def _break_missing_stem(track: Path):
    (track / "drums.wav").unlink()


def _break_lengths(track: Path):
    sf.write(track / "bass.wav", np.zeros(RATE * 5, dtype=np.float32), RATE)


def _break_unreadable(track: Path):
    (track / "other.wav").write_bytes(b"this is not a wav file")


def _break_empty(track: Path):
    sf.write(track / "vocals.wav", np.zeros(0, dtype=np.float32), RATE)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (_break_missing_stem, "missing stem file"),
        (_break_lengths, "different lengths"),
        (_break_unreadable, "cannot read"),
        (_break_empty, "is empty"),
    ],
)
def test_bad_input_fails_cleanly_with_track_and_file(tmp_path, breakage, message):
    write_song(tmp_path / "corpus" / "train" / "good", RATE, 1, seed=0, seconds=3)
    write_song(tmp_path / "corpus" / "test" / "broken", RATE, 1, seed=1, seconds=3)
    breakage(tmp_path / "corpus" / "test" / "broken")
    with pytest.raises(CorpusError, match=message) as error:
        build_dataset(tmp_path / "corpus", tmp_path / "out", cache_dir=tmp_path / "cache")
    assert "'broken'" in str(error.value) and "broken/" in str(error.value) and "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]  # no output, no staging folder, no cache


def test_held_out_set_with_only_test_songs_builds_only_test(tmp_path, capsys):
    """A set to evaluate on needs no train/: the builder writes the test split alone."""
    write_song(tmp_path / "held_out" / "test" / "a", 44100, 2, seed=0, seconds=21)
    write_song(tmp_path / "held_out" / "test" / "b", 24000, 1, seed=1, seconds=21)
    stats = build_dataset(tmp_path / "held_out", tmp_path / "out", cache_dir=tmp_path / "cache")
    built = datasets.load_dataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "hf_cache"))
    assert list(built) == ["test"] and len(built["test"]) == 30 * 4
    assert stats["splits"]["test"]["gating"]["kept"] == 4 and stats["splits"]["train"]["rows"] == 0
    capsys.readouterr()
    (tmp_path / "nothing" / "train").mkdir(parents=True)
    assert main(["build-dataset", "--stems", str(tmp_path / "nothing"), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no track folders in train/ or test/" in err and str(tmp_path / "nothing") in err
    assert not (tmp_path / "out2").exists()


def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["build-dataset", "--stems", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and "Traceback" not in err
    write_song(tmp_path / "corpus" / "train" / "a", RATE, 1, seed=0, seconds=3)
    write_song(tmp_path / "corpus" / "test" / "b", RATE, 1, seed=1, seconds=3)
    (tmp_path / "corpus" / "test" / "b" / "bass.wav").unlink()
    assert main(["build-dataset", "--stems", str(tmp_path / "corpus"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Track 'b'" in err and "bass.wav" in err
    assert not (tmp_path / "out").exists()


def test_gating_criteria():
    t = np.arange(3 * 10 * RATE) / RATE
    stems = np.tile(0.1 * np.sin(2 * np.pi * 220 * t), (4, 1)).astype(np.float32)  # [4, 3 chunks]
    stems[:, : 10 * RATE] *= 10 ** (-40 / 20)  # chunk 0: every stem at about -63 dBFS
    stems[:, 10 * RATE + RATE : 20 * RATE] = 0  # chunk 1: 10 % of frames active
    kept, stats = gate_chunks(stems, RATE, 10.0, GatingThresholds())
    assert kept == [2]
    assert (stats.quiet_stem, stats.too_few_active_frames, stats.gated_out) == (1, 2, 2)
    kept, _ = gate_chunks(
        stems, RATE, 10.0, GatingThresholds(min_active_fraction=0.05, mixture_min_rms_db=-60, stem_min_rms_db=-60)
    )
    assert kept == [1, 2]


def test_augment_mix_is_seeded_and_bounded():
    mix = 0.5 * np.sin(np.linspace(0, 2000, 10 * RATE)).astype(np.float32)
    a, b, c = augment_mix(mix, 1), augment_mix(mix, 1), augment_mix(mix, 2)
    assert a.dtype == np.float32 and a.shape == mix.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(augment_mix(3 * mix, 0)).max() <= 1.0
    ratio_db = 20 * np.log10(np.std(a) / np.std(mix))
    assert -3.01 < ratio_db < 3.01 and abs(a.mean()) < 0.006


def test_bank_noise_is_white_standard_normal_at_any_offset():
    """The pre-drawn bank keeps the augmentation's distribution: N(0, 1) samples, uncorrelated in time, wrapping
    around the bank's end without a seam, the same offset for the same seed."""
    from dataset_builder.augment import NOISE_BANK_SAMPLES, bank_noise, noise_bank

    draws = np.stack([bank_noise(np.random.default_rng(seed), 10 * RATE) for seed in range(40)])
    assert draws.shape == (40, 10 * RATE) and draws.dtype == np.float32
    assert abs(draws.mean()) < 0.002 and abs(draws.std() - 1) < 0.002
    assert abs(((draws - draws.mean()) ** 4).mean() / draws.var() ** 2 - 3) < 0.02  # Gaussian kurtosis
    lag1 = (draws[:, 1:] * draws[:, :-1]).mean()
    assert abs(lag1) < 0.002
    np.testing.assert_array_equal(bank_noise(np.random.default_rng(7), 100), bank_noise(np.random.default_rng(7), 100))

    class EndOfBank:  # an offset 10 samples before the end: the draw wraps to the bank's start
        def integers(self, high):
            return high - 10

    wrapped = bank_noise(EndOfBank(), 30)
    np.testing.assert_array_equal(wrapped, np.concatenate([noise_bank()[-10:], noise_bank()[:20]]))
    assert len(noise_bank()) == NOISE_BANK_SAMPLES and not noise_bank().flags.writeable


def test_augmented_noise_has_the_drawn_snr():
    """What `augment_mix` adds beyond the gain and DC offset is white noise at an SNR within U(40, 60) dB."""
    mix = 0.3 * np.sin(np.linspace(0, 3000, 10 * RATE)).astype(np.float32)
    snrs = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        gain_db, snr_db, dc = rng.uniform(-3, 3), rng.uniform(40, 60), rng.uniform(-0.005, 0.005)
        out = augment_mix(mix, seed)
        noise = out - mix * np.float32(10 ** (gain_db / 20)) - np.float32(dc)
        measured = 20 * np.log10(np.std(mix * 10 ** (gain_db / 20)) / np.std(noise))
        assert abs(measured - snr_db) < 0.1 and abs(noise.mean()) < 1e-4
        snrs.append(measured)
    assert 39.9 <= min(snrs) and max(snrs) <= 60.1 and np.ptp(snrs) > 10


def test_mono_pcm16_tracks_at_the_model_rate_are_read_in_place(tmp_path):
    """No cache entry for a track already in the cache's form; its chunks are the files' samples."""
    write_song(tmp_path / "corpus" / "train" / "Mono", RATE, 1, seed=3)
    write_song(tmp_path / "corpus" / "test" / "Stereo", 44100, 2, seed=4)
    cache = StemCache(tmp_path / "corpus", cache_dir=tmp_path / "cache")
    chunk = cache.chunk("Mono", 2.0, 12.0)
    expected = np.stack([sf.read(tmp_path / "corpus" / "train" / "Mono" / f"{s}.wav", dtype="float32")[0] for s in STEMS])
    np.testing.assert_array_equal(chunk, expected[:, 2 * RATE : 12 * RATE])
    assert cache.in_place("Mono") is not None and cache.in_place("Stereo") is None
    cache.chunk("Stereo", 0.0, 1.0)
    written = sorted(p.relative_to(cache.directory).parts[0] for p in cache.directory.rglob("*.npy"))
    assert written == ["Stereo"]
    assert np.load(next(cache.directory.rglob("*.npy"))).dtype == np.int16


def test_cli_synth_stems_then_build_sampled(tmp_path, capsys):
    corpus, out = tmp_path / "synth", tmp_path / "sampled"
    assert main(["synth-stems", "--out", str(corpus), "--songs", "2", "--seconds", "21", "--seed", "1"]) == 0
    assert (
        main(
            [
                "build-dataset",
                "--stems",
                str(corpus),
                "--config",
                "sampled",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    assert "Config: `sampled`" in (out / "README.md").read_text()
    capsys.readouterr()
    assert main(["synth-stems", "--out", str(tmp_path / "bad"), "--songs", "0", "--seconds", "21"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_stem_cache_pickles_without_its_arrays(workspace):
    import pickle

    cache = StemCache(workspace["corpus"], cache_dir=workspace["cache"])
    cache.load("Test X")
    clone = pickle.loads(pickle.dumps(cache))
    assert len(pickle.dumps(cache)) < 10_000
    np.testing.assert_array_equal(clone.load("Test X"), cache.load("Test X"))
