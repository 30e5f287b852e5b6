"""A producer's mixing chain for the synthetic stems, drawn from a song's seed.

Real multitracks are processed: each stem is high-passed, tilted, compressed, placed in the stereo field and sent to a
short reverb, and the mix bus has a limiter. `plan_mixing` draws those settings (a JSON-serialisable dict),
`process_stem` applies a stem's chain with pedalboard's plugins, and `bus_limiter_gain` computes the limiter's gain so
that it can be multiplied into every stem: the stems then still sum exactly to the limited mixture.
"""

from __future__ import annotations

import math

import numpy as np
from pedalboard import Compressor, HighpassFilter, HighShelfFilter, LowShelfFilter, Pedalboard, Reverb
from scipy import ndimage

from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

PROCESSORS = ("highpass", "eq", "compressor", "stereo", "reverb")  # a stem's chain, in processing order

# Chance that a processor is on a stem (a stem's settings hold None for a processor that is off).
PROBABILITY = {
    "highpass": {"bass": 0.0, "drums": 0.3, "other": 0.6, "vocals": 0.8},  # never on bass: it carries the low end
    "eq": {"bass": 0.6, "drums": 0.6, "other": 0.7, "vocals": 0.7},
    "compressor": {"bass": 0.7, "drums": 0.8, "other": 0.5, "vocals": 0.8},
    "stereo": {"bass": 0.6, "drums": 0.8, "other": 0.9, "vocals": 0.7},
    "reverb": {"bass": 0.1, "drums": 0.4, "other": 0.8, "vocals": 0.9},
}

# High-pass (first order, 6 dB/octave): cutoff in Hz.
HIGHPASS_HZ = {"drums": (20.0, 40.0), "other": (60.0, 200.0), "vocals": (70.0, 150.0)}

# EQ tilt: a low shelf and a high shelf with opposite gains; `tilt_db` > 0 brightens (high shelf +tilt, low −tilt).
TILT_DB = (-3.0, 3.0)
LOW_SHELF_HZ = (180.0, 350.0)
HIGH_SHELF_HZ = (3000.0, 6000.0)
SHELF_Q = 0.707

# Compressor: threshold in dB relative to the stem's RMS where it is not silent, ratio, attack and release.
THRESHOLD_DB = {"bass": (-8.0, -2.0), "drums": (-12.0, -4.0), "other": (-8.0, -2.0), "vocals": (-10.0, -3.0)}
RATIO = (2.0, 6.0)
ATTACK_MS = (1.0, 30.0)
RELEASE_MS = (40.0, 300.0)

# Stereo: constant-power pan position (−1 left … +1 right) and width (side gain in mid/side; 0 mono, 1 unchanged).
PAN = {"bass": (-0.1, 0.1), "drums": (-0.15, 0.15), "other": (-0.6, 0.6), "vocals": (-0.1, 0.1)}
WIDTH = {"bass": (0.0, 0.5), "drums": (0.9, 1.4), "other": (1.0, 1.6), "vocals": (0.3, 0.9)}

# Short send reverb (pedalboard's Freeverb): room size, damping and wet level (wet level 0.1 is about −18 dB of the
# dry signal's power for noise); the dry signal passes at unity.
ROOM_SIZE = (0.1, 0.5)
DAMPING = (0.3, 0.8)
WET_LEVEL = {"bass": (0.01, 0.05), "drums": (0.02, 0.1), "other": (0.05, 0.2), "vocals": (0.05, 0.25)}

# Bus limiter: the ceiling sits `reduction_db` below the mix's own peak; `release_ms` is the release time constant.
LIMITER_PROBABILITY = 0.9
REDUCTION_DB = (0.5, 6.0)
LIMITER_RELEASE_MS = (30.0, 300.0)
LOOKAHEAD_MS = 5.0  # the look-ahead, which is also the attack: the gain ramps down over it before a peak
CEILING_TOLERANCE = 1e-6  # relative: a limited mix may exceed its ceiling by float32 rounding of gain × mix only

# The stem level that the compressor's threshold is relative to: RMS over 50 ms frames at most 40 dB below the
# loudest frame.
LEVEL_FRAME_SECONDS = 0.05
LEVEL_GATE_DB = 40.0


def draw(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A uniform draw in `bounds`, rounded to 3 decimals."""
    return round(float(rng.uniform(*bounds)), 3)


def draw_processor(rng: np.random.Generator, processor: str, stem: str) -> dict:
    """The settings of one processor on `stem`."""
    if processor == "highpass":
        return {"cutoff_hz": draw(rng, HIGHPASS_HZ[stem])}
    if processor == "eq":
        return {"tilt_db": draw(rng, TILT_DB), "low_hz": draw(rng, LOW_SHELF_HZ), "high_hz": draw(rng, HIGH_SHELF_HZ)}
    if processor == "compressor":
        return {
            "threshold_db": draw(rng, THRESHOLD_DB[stem]),
            "ratio": draw(rng, RATIO),
            "attack_ms": draw(rng, ATTACK_MS),
            "release_ms": draw(rng, RELEASE_MS),
        }
    if processor == "stereo":
        return {"pan": draw(rng, PAN[stem]), "width": draw(rng, WIDTH[stem])}
    # reverb
    return {"room_size": draw(rng, ROOM_SIZE), "damping": draw(rng, DAMPING), "wet_level": draw(rng, WET_LEVEL[stem])}


def plan_mixing(rng: np.random.Generator) -> dict:
    """The song's mixing settings: `{"stems": {stem: {processor: settings or None}}, "bus": limiter settings or None}`.

    Plain floats rounded to 3 decimals and None only, so the dict is JSON-serialisable; the ranges are the constants
    above.
    """
    stems = {
        stem: {
            processor: draw_processor(rng, processor, stem) if rng.random() < PROBABILITY[processor][stem] else None
            for processor in PROCESSORS
        }
        for stem in STEMS
    }
    bus = None
    if rng.random() < LIMITER_PROBABILITY:
        bus = {"reduction_db": draw(rng, REDUCTION_DB), "release_ms": draw(rng, LIMITER_RELEASE_MS)}
    return {"stems": stems, "bus": bus}


def active_rms_db(audio: np.ndarray, sample_rate: int) -> float | None:
    """RMS in dBFS of `audio` [channels, samples] over its frames that are not silent (None if all are silent)."""
    frame = max(1, round(LEVEL_FRAME_SECONDS * sample_rate))
    frames = -(-audio.shape[1] // frame)
    padded = np.pad(audio, ((0, 0), (0, frames * frame - audio.shape[1])))  # [channels, frames * frame]
    power = np.square(padded, dtype=np.float64).reshape(len(audio), frames, frame).mean(axis=(0, 2))  # [frames]
    loudest = power.max()
    if loudest == 0.0:
        return None
    return 10.0 * math.log10(power[power >= loudest * 10.0 ** (-LEVEL_GATE_DB / 10.0)].mean())


def filter_plugins(settings: dict) -> list:
    """Fresh high-pass and shelf plugins for a stem's settings (empty when both are off)."""
    plugins = []
    if settings["highpass"] is not None:
        plugins.append(HighpassFilter(cutoff_frequency_hz=settings["highpass"]["cutoff_hz"]))
    if settings["eq"] is not None:
        eq = settings["eq"]
        plugins.append(LowShelfFilter(cutoff_frequency_hz=eq["low_hz"], gain_db=-eq["tilt_db"], q=SHELF_Q))
        plugins.append(HighShelfFilter(cutoff_frequency_hz=eq["high_hz"], gain_db=eq["tilt_db"], q=SHELF_Q))
    return plugins


def compress(audio: np.ndarray, settings: dict, sample_rate: int) -> np.ndarray:
    """`audio` [2, samples] through a fresh compressor whose threshold is relative to the audio's own level."""
    level_db = active_rms_db(audio, sample_rate)
    if level_db is None:
        return audio
    compressor = Compressor(
        threshold_db=level_db + settings["threshold_db"],
        ratio=settings["ratio"],
        attack_ms=settings["attack_ms"],
        release_ms=settings["release_ms"],
    )
    return compressor.process(audio, sample_rate)


def place_in_stereo(audio: np.ndarray, pan: float, width: float) -> np.ndarray:
    """Mid/side width (side gain `width`), then a constant-power pan (unity at the centre) of `audio` [2, samples].

    A mono-centred signal keeps its power at every pan position: the channel gains are √2·cos and √2·sin of
    (pan + 1)·π/4.
    """
    mid = (audio[0] + audio[1]) / 2  # [samples]
    side = (audio[0] - audio[1]) * np.float32(width / 2)  # [samples]
    angle = (pan + 1.0) * math.pi / 4
    left, right = np.float32(math.sqrt(2) * math.cos(angle)), np.float32(math.sqrt(2) * math.sin(angle))
    return np.stack([(mid + side) * left, (mid - side) * right])


def add_reverb(audio: np.ndarray, settings: dict, sample_rate: int) -> np.ndarray:
    """`audio` [2, samples] plus a fresh reverb's wet signal (a send; the tail past the end is cut)."""
    reverb = Reverb(
        room_size=settings["room_size"], damping=settings["damping"], wet_level=settings["wet_level"], dry_level=0.0
    )
    return audio + reverb.process(audio, sample_rate)


def process_stem(audio: np.ndarray, settings: dict, sample_rate: int) -> np.ndarray:
    """A stem [2, samples] (more than 2 samples) through its mixing chain; float32 [2, samples].

    High-pass and EQ tilt, compressor, stereo placement, send reverb, each skipped where its settings are None.
    Every call builds fresh plugins, so the output depends on the input and the settings only, and silence stays
    exactly silent.
    """
    if audio.ndim != 2 or audio.shape[0] != 2 or audio.shape[1] < 3:
        raise ValueError(f"expected a stereo stem [2, samples > 2], got shape {audio.shape}")
    audio = np.array(audio, dtype=np.float32, order="C")  # a copy: the caller's array is never returned
    plugins = filter_plugins(settings)
    if plugins:
        audio = Pedalboard(plugins).process(audio, sample_rate)
    if settings["compressor"] is not None:
        audio = compress(audio, settings["compressor"], sample_rate)
    if settings["stereo"] is not None:
        audio = place_in_stereo(audio, **settings["stereo"])
    if settings["reverb"] is not None:
        audio = add_reverb(audio, settings["reverb"], sample_rate)
    return audio


def exponential_release(reduction_db: np.ndarray, time_constant: float) -> np.ndarray:
    """`reduction_db` [samples] with a release: it rises at once and falls back with `time_constant` τ (in samples).

    The recursion d[n] = max(x[n], d[n−1]·e^(−1/τ)) in the log domain is a running maximum:
    log d[n] = max over k ≤ n of (log x[k] + k/τ) − n/τ.
    """
    steps = np.arange(len(reduction_db)) / time_constant  # [samples]
    with np.errstate(divide="ignore"):
        log_reduction = np.log(reduction_db)  # −inf where there is no reduction
    return np.exp(np.maximum.accumulate(log_reduction + steps) - steps)


def bus_limiter_gain(mix: np.ndarray, sample_rate: int, settings: dict | None) -> np.ndarray:
    """The gain [samples] (float32, 0 < g ≤ 1) of a linked look-ahead peak limiter on `mix` [channels, samples].

    It is a gain computer rather than pedalboard's `Limiter`, which returns only the limited audio: the same gain is
    multiplied into every stem, so the stems still sum exactly to the limited mix. The ceiling sits
    `settings["reduction_db"]` below the mix's peak. Per sample, the reduction needed to keep the louder channel under
    the ceiling (in dB) is held over the look-ahead window ahead, released with `settings["release_ms"]`, and
    averaged over the look-ahead window behind, so the gain ramps down during the look-ahead and is never above what
    that sample needs: gain × mix peaks at most `CEILING_TOLERANCE` (relative) above the ceiling. Where the mix stays
    under the ceiling (and after the release), the gain is exactly 1. `settings` None (no limiter) gives all ones.
    """
    peak = np.abs(mix).max(axis=0).astype(np.float64)  # [samples], linked across channels
    if settings is None or not peak.any():
        return np.ones(mix.shape[1], dtype=np.float32)
    ceiling = peak.max() * 10.0 ** (-settings["reduction_db"] / 20.0)
    needed_gain = ceiling / np.maximum(peak, ceiling)  # [samples], 1 where the mix is under the ceiling
    lookahead = max(1, round(LOOKAHEAD_MS * sample_rate / 1000.0))
    held = ndimage.maximum_filter1d(-20.0 * np.log10(needed_gain), lookahead, origin=-(lookahead // 2), mode="nearest")
    released = exponential_release(held, settings["release_ms"] * sample_rate / 1000.0)
    smoothed = ndimage.uniform_filter1d(released, lookahead, origin=(lookahead - 1) // 2, mode="nearest")
    return np.minimum(10.0 ** (-smoothed / 20.0), needed_gain).astype(np.float32)  # min: only float rounding differs
