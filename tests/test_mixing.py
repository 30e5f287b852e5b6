"""The synthetic stems' mixing chain: settings drawn from a seed, each processor's effect, the bus limiter's gain."""

import json

import numpy as np
import pytest

from dataset_builder.synth import mixing
from dataset_builder.synth.mixing import PROCESSORS, bus_limiter_gain, plan_mixing, process_stem
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

SAMPLE_RATE = 24000
OFF = dict.fromkeys(PROCESSORS)  # a stem's settings with every processor off
FULL_CHAIN = {
    "highpass": {"cutoff_hz": 100.0},
    "eq": {"tilt_db": 2.0, "low_hz": 250.0, "high_hz": 4000.0},
    "compressor": {"threshold_db": -6.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0},
    "stereo": {"pan": 0.3, "width": 1.2},
    "reverb": {"room_size": 0.4, "damping": 0.5, "wet_level": 0.2},
}
LIMITER = {"reduction_db": 6.0, "release_ms": 100.0}


def power_db(audio):
    return 10 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + 1e-30)


def crest_db(audio):
    return 20 * np.log10(np.abs(audio).max() / np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def noise(seconds=2.0, seed=0):
    """Decorrelated stereo noise [2, samples]."""
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((2, int(seconds * SAMPLE_RATE)))).astype(np.float32)


def sine(freq, seconds=2.0):
    """A mono-centred sine [2, samples]."""
    wave = 0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE)
    return np.stack([wave, wave]).astype(np.float32)


def drum_hits(seconds=3.0, seed=0):
    """Mono-centred noise hits [2, samples] every 250 ms (80 ms decay), every fourth one 12 dB louder."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    velocity = np.where((t // 0.25) % 4 == 0, 1.0, 0.25)
    hits = np.random.default_rng(seed).standard_normal(len(t)) * np.exp(-(t % 0.25) / 0.08) * velocity
    return np.stack([hits, hits]).astype(np.float32)


def test_plan_is_deterministic_and_json_serialisable():
    plan = plan_mixing(np.random.default_rng(7))
    assert plan == plan_mixing(np.random.default_rng(7))
    assert plan != plan_mixing(np.random.default_rng(8))
    assert json.loads(json.dumps(plan)) == plan
    assert set(plan["stems"]) == set(STEMS) and all(set(s) == set(PROCESSORS) for s in plan["stems"].values())


def test_plans_stay_in_the_documented_ranges():
    bounds = {
        "highpass": lambda stem: {"cutoff_hz": mixing.HIGHPASS_HZ[stem]},
        "eq": lambda stem: {"tilt_db": mixing.TILT_DB, "low_hz": mixing.LOW_SHELF_HZ, "high_hz": mixing.HIGH_SHELF_HZ},
        "compressor": lambda stem: {
            "threshold_db": mixing.THRESHOLD_DB[stem],
            "ratio": mixing.RATIO,
            "attack_ms": mixing.ATTACK_MS,
            "release_ms": mixing.RELEASE_MS,
        },
        "stereo": lambda stem: {"pan": mixing.PAN[stem], "width": mixing.WIDTH[stem]},
        "reverb": lambda stem: {
            "room_size": mixing.ROOM_SIZE,
            "damping": mixing.DAMPING,
            "wet_level": mixing.WET_LEVEL[stem],
        },
    }
    seen = set()
    for seed in range(300):
        plan = plan_mixing(np.random.default_rng(seed))
        for stem, chain in plan["stems"].items():
            for processor, settings in chain.items():
                if settings is None:
                    continue
                seen.add((stem, processor))
                expected = bounds[processor](stem)
                assert settings.keys() == expected.keys()
                for name, value in settings.items():
                    assert type(value) is float and round(value, 3) == value
                    assert expected[name][0] <= value <= expected[name][1], (stem, processor, name, value)
        if plan["bus"] is not None:
            assert mixing.REDUCTION_DB[0] <= plan["bus"]["reduction_db"] <= mixing.REDUCTION_DB[1]
            assert mixing.LIMITER_RELEASE_MS[0] <= plan["bus"]["release_ms"] <= mixing.LIMITER_RELEASE_MS[1]
    expected_seen = {(s, p) for s in STEMS for p in PROCESSORS if mixing.PROBABILITY[p][s] > 0}
    assert seen == expected_seen  # every possible processor shows up; never a high-pass on bass


def test_process_stem_is_deterministic_and_keeps_shape_and_dtype():
    audio = noise()
    first = process_stem(audio, FULL_CHAIN, SAMPLE_RATE)
    process_stem(drum_hits(), FULL_CHAIN, SAMPLE_RATE)  # another call in between leaves no state behind
    assert np.array_equal(first, process_stem(audio, FULL_CHAIN, SAMPLE_RATE))
    assert first.shape == audio.shape and first.dtype == np.float32
    assert not np.array_equal(first, audio)


def test_process_stem_never_returns_its_input():
    audio = noise()
    out = process_stem(audio, OFF, SAMPLE_RATE)
    assert np.array_equal(out, audio) and out is not audio


@pytest.mark.parametrize("settings", [FULL_CHAIN, OFF])
def test_silence_stays_silent(settings):
    silence = np.zeros((2, SAMPLE_RATE), dtype=np.float32)
    assert not process_stem(silence, settings, SAMPLE_RATE).any()


def test_pan_moves_a_centred_signal_to_its_side():
    left = process_stem(sine(440), {**OFF, "stereo": {"pan": -0.5, "width": 1.0}}, SAMPLE_RATE)
    assert power_db(left[0]) > power_db(left[1]) + 6
    assert power_db(left) == pytest.approx(power_db(sine(440)), abs=0.01)  # constant power
    right = process_stem(sine(440), {**OFF, "stereo": {"pan": 0.5, "width": 1.0}}, SAMPLE_RATE)
    assert power_db(right[1]) > power_db(right[0]) + 6


def test_centre_pan_at_width_one_is_the_identity():
    audio = noise()
    out = process_stem(audio, {**OFF, "stereo": {"pan": 0.0, "width": 1.0}}, SAMPLE_RATE)
    np.testing.assert_allclose(out, audio, atol=1e-6)


def test_width_zero_gives_identical_channels():
    out = process_stem(noise(), {**OFF, "stereo": {"pan": 0.0, "width": 0.0}}, SAMPLE_RATE)
    assert np.array_equal(out[0], out[1])


@pytest.mark.parametrize("tilt_db", [3.0, -3.0])
def test_eq_tilt_is_gentle(tilt_db):
    eq = {**OFF, "eq": {"tilt_db": tilt_db, "low_hz": 250.0, "high_hz": 4000.0}}
    steady = slice(SAMPLE_RATE // 2, None)  # past the filters' start-up

    def change_db(audio):
        return power_db(process_stem(audio, eq, SAMPLE_RATE)[:, steady]) - power_db(audio[:, steady])

    low, high, broadband = change_db(sine(80)), change_db(sine(8000)), change_db(noise())
    assert low == pytest.approx(-tilt_db, abs=0.5)
    assert high == pytest.approx(tilt_db, abs=0.5)
    assert abs(broadband) <= abs(tilt_db)


def test_highpass_removes_rumble_only():
    highpass = {**OFF, "highpass": {"cutoff_hz": 150.0}}
    steady = slice(SAMPLE_RATE // 2, None)
    for freq, lowest, highest in ((20, -20.0, -15.0), (4000, -0.1, 0.0)):
        out = process_stem(sine(freq), highpass, SAMPLE_RATE)
        assert lowest <= power_db(out[:, steady]) - power_db(sine(freq)[:, steady]) <= highest


def test_compressor_reduces_crest_factor_at_any_level():
    compressor = {**OFF, "compressor": {"threshold_db": -6.0, "ratio": 4.0, "attack_ms": 0.5, "release_ms": 50.0}}
    hits = drum_hits()
    loud = process_stem(hits, compressor, SAMPLE_RATE)
    quiet = process_stem(hits * np.float32(0.01), compressor, SAMPLE_RATE)
    assert crest_db(loud) < crest_db(hits) - 3
    np.testing.assert_allclose(quiet, loud * np.float32(0.01), rtol=1e-3, atol=1e-7)  # threshold follows the level


def test_reverb_adds_a_tail_after_a_click():
    click = np.zeros((2, SAMPLE_RATE), dtype=np.float32)
    click[:, SAMPLE_RATE // 4] = 1.0
    out = process_stem(click, {**OFF, "reverb": {"room_size": 0.3, "damping": 0.5, "wet_level": 0.1}}, SAMPLE_RATE)
    tail = out[:, SAMPLE_RATE // 4 + 1 :]
    assert not out[:, : SAMPLE_RATE // 4].any()  # nothing before the click
    assert np.array_equal(out[:, SAMPLE_RATE // 4], click[:, SAMPLE_RATE // 4])  # the dry click passes at unity
    assert -70 < power_db(tail) < -30


def limiter_test_stems():
    """Four stems [2, samples]: quiet noise for 1 s, then loud drum hits on two of them."""
    stems = [noise(3.0, seed) * np.float32(0.1) for seed in range(4)]
    for stem in stems[:2]:
        stem[:, SAMPLE_RATE:] += drum_hits(2.0)
    return stems


def test_bus_gain_keeps_the_stems_summing_to_the_limited_mix():
    stems = limiter_test_stems()
    mix = sum(stems)
    gain = bus_limiter_gain(mix, SAMPLE_RATE, LIMITER)
    assert gain.shape == (mix.shape[1],) and gain.dtype == np.float32
    assert np.all(gain > 0) and np.all(gain <= 1)
    np.testing.assert_allclose(sum(stem * gain for stem in stems), mix * gain, rtol=1e-5, atol=1e-6)


def test_bus_gain_holds_the_ceiling_and_leaves_quiet_parts_alone():
    mix = sum(limiter_test_stems())
    gain = bus_limiter_gain(mix, SAMPLE_RATE, LIMITER)
    ceiling = np.abs(mix).max() * 10 ** (-LIMITER["reduction_db"] / 20)
    assert np.abs(mix * gain).max() <= ceiling * (1 + mixing.CEILING_TOLERANCE)
    assert np.abs(mix * gain).max() >= ceiling * (1 - 1e-3)  # it limits to the ceiling, not below
    lookahead = round(mixing.LOOKAHEAD_MS * SAMPLE_RATE / 1000)
    assert np.all(gain[: SAMPLE_RATE - lookahead] == 1.0)  # the quiet second before the first hit
    assert gain.min() < 10 ** (-LIMITER["reduction_db"] / 20) * 1.01


def test_bus_gain_is_one_without_a_limiter_or_for_silence():
    mix = sum(limiter_test_stems())
    assert np.array_equal(bus_limiter_gain(mix, SAMPLE_RATE, None), np.ones(mix.shape[1], dtype=np.float32))
    silence = np.zeros((2, SAMPLE_RATE), dtype=np.float32)
    assert np.array_equal(bus_limiter_gain(silence, SAMPLE_RATE, LIMITER), np.ones(SAMPLE_RATE, dtype=np.float32))


def test_bus_release_recovers_with_its_time_constant():
    mix = np.full((2, 3 * SAMPLE_RATE), 0.1, dtype=np.float32)
    mix[:, SAMPLE_RATE // 2] = 1.0  # one 20 dB spike; the ceiling is 6 dB under it, so 14 dB above the rest
    gain = bus_limiter_gain(mix, SAMPLE_RATE, LIMITER)
    release = round(LIMITER["release_ms"] * SAMPLE_RATE / 1000)
    reduction_db = -20 * np.log10(gain[SAMPLE_RATE // 2 + release])
    assert reduction_db == pytest.approx(LIMITER["reduction_db"] / np.e, rel=0.05)
    assert gain[-1] == 1.0
