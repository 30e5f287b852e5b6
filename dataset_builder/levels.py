"""Levels in decibels: dB ↔ linear gain, RMS level in dBFS, and integrated loudness in LUFS."""

from __future__ import annotations

import math

import numpy as np


def db_to_gain(db):
    """Linear amplitude gain of a level change in dB (a number or an array; +6.02 dB doubles the amplitude)."""
    return 10 ** (db / 20)


def gain_to_db(gain: float) -> float:
    """Level change in dB of a linear amplitude gain (gains below 1e-12 count as 1e-12)."""
    return 20.0 * math.log10(max(gain, 1e-12))


def rms_db(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """RMS level in dBFS along `axis` (silence gives about -200 dB)."""
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64), axis=axis) + 1e-20)


def loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770, gated, so silences do not count) of `audio` [channels, samples] in LUFS;
    -inf for silence."""
    import pyloudnorm  # imports scipy.signal (about a second), which only the synthetic corpus and benches need

    return pyloudnorm.Meter(sample_rate).integrated_loudness(audio.T.astype(np.float64))
