"""Training-time augmentation of a rendered mix (DESIGN.md recipe)."""

from __future__ import annotations

import functools

import numba
import numpy as np

from .levels import db_to_gain

NOISE_BANK_SAMPLES = 1 << 22  # 4,194,304 standard normal samples (16 MB), 17 clips of 10 s at 24 kHz
NOISE_BANK_SEED = 0


@functools.cache
def noise_bank() -> np.ndarray:
    """Standard normal float32 samples drawn once per process from a fixed seed (read-only)."""
    bank = np.random.default_rng(NOISE_BANK_SEED).standard_normal(NOISE_BANK_SAMPLES, dtype=np.float32)
    bank.flags.writeable = False
    return bank


def bank_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` standard normal samples: the noise bank read from an offset drawn by `rng`, wrapping around its end.
    Each sample is N(0, 1) and samples at different positions are independent, as with a fresh draw, at the cost of a
    slice instead of `size` Gaussian draws."""
    bank = noise_bank()
    start = int(rng.integers(len(bank)))
    if start + size <= len(bank):
        return bank[start : start + size]
    return np.concatenate((bank[start:], np.resize(bank, size - (len(bank) - start))))


def augment_mix(mix: np.ndarray, seed) -> np.ndarray:
    """Whole-mix gain U(-3, +3) dB, white noise at an SNR of U(40, 60) dB, DC offset U(-0.005, +0.005), clamp [-1, 1].

    Args:
        mix: float mono [samples] (or any shape; the noise is drawn per sample, from `bank_noise`).
        seed: anything `numpy.random.default_rng` accepts (int, `SeedSequence`, `Generator`).

    Returns float32, same shape. The same seed gives the same result.
    """
    return augment_clips([mix], seed)[0]


def augment_clips(clips, seed, mix_index: int = 0) -> list[np.ndarray]:
    """The clips of one example (a mix and stems of it) augmented alike: one draw of the gain, SNR and DC offset; the
    gain on every clip, the noise and the offset on the mix (`clips[mix_index]`) only, exactly as `augment_mix` with the
    same seed. Stems stay clean, as a session's stems are at inference: a stem that is silent is digital silence
    (measured: a model trained with noise on its stem clips lost 0.5 nats of loss on clean ones)."""
    rng = np.random.default_rng(seed)
    gain_db, snr_db, dc_offset = rng.uniform(-3, 3), rng.uniform(40, 60), rng.uniform(-0.005, 0.005)
    gain = db_to_gain(gain_db)
    augmented = [np.clip(np.asarray(clip, dtype=np.float32) * np.float32(gain), -1.0, 1.0) for clip in clips]
    mix = np.asarray(clips[mix_index], dtype=np.float32)
    flat = mix.reshape(-1)
    noise_rms = gain * np.sqrt(np.dot(flat, flat) / max(flat.size, 1)) / db_to_gain(snr_db)
    noise = bank_noise(rng, flat.size)
    out = scale_add_clip(flat, noise, np.float32(gain), np.float32(noise_rms), np.float32(dc_offset), np.empty_like(flat))
    augmented[mix_index] = out.reshape(mix.shape)
    return augmented


@numba.njit(cache=True, nogil=True)
def scale_add_clip(mix, noise, gain, noise_scale, offset, out):
    """out = clip(mix * gain + noise * noise_scale + offset, -1, 1), float32 [samples], in one pass."""
    lowest, highest = np.float32(-1.0), np.float32(1.0)
    for i in range(out.shape[0]):
        value = mix[i] * gain + noise[i] * noise_scale + offset
        out[i] = lowest if value < lowest else (highest if value > highest else value)  # vectorises; min/max do not
    return out
