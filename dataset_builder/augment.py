"""Training-time augmentation of a rendered mix (DESIGN.md recipe)."""

from __future__ import annotations

import numpy as np

from .levels import db_to_gain


def augment_mix(mix: np.ndarray, seed) -> np.ndarray:
    """Whole-mix gain U(-3, +3) dB, white noise at an SNR of U(40, 60) dB, DC offset U(-0.005, +0.005), clamp [-1, 1].

    Args:
        mix: float mono [samples] (or any shape; the noise is drawn per sample).
        seed: anything `numpy.random.default_rng` accepts (int, `SeedSequence`, `Generator`).

    Returns float32, same shape. The same seed gives the same result.
    """
    rng = np.random.default_rng(seed)
    gain_db, snr_db, dc_offset = rng.uniform(-3, 3), rng.uniform(40, 60), rng.uniform(-0.005, 0.005)
    mix = np.asarray(mix, dtype=np.float32) * np.float32(db_to_gain(gain_db))
    noise_rms = np.sqrt(np.mean(np.square(mix, dtype=np.float64))) / db_to_gain(snr_db)
    noise = rng.standard_normal(mix.shape, dtype=np.float32) * np.float32(noise_rms)
    return np.clip(mix + noise + np.float32(dc_offset), -1.0, 1.0)
