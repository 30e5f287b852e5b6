"""Signal building blocks: notes, envelopes, oscillators, filters, noise, reverb, panning and step patterns."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

MIN_SAMPLE_RATE = 22050  # the lowest rate the sounds are made for: it still covers 11 kHz


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    length: float  # seconds, release included
    pitch: float  # MIDI
    velocity: float = 1.0
    voice: int = 0  # which note of a chord voicing, from the lowest


def midi_to_hz(pitch):
    return 440.0 * 2.0 ** ((np.asarray(pitch) - 69.0) / 12.0)


def envelope(t: np.ndarray, length: float, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """Attack ramp, exponential decay to `sustain`, and a linear release that reaches 0 at `length`."""
    rise = np.minimum(t / attack, 1.0)
    fall = sustain + (1.0 - sustain) * np.exp(-t / decay)
    end = np.clip((length - t) / min(release, length / 2), 0.0, 1.0)
    return (rise * fall * end).astype(np.float32)


def note_tracks(notes, num_samples: int, sample_rate: int, attack=0.005, decay=1.0, sustain=1.0, release=0.03):
    """Per-sample frequency (Hz), amplitude and time since the onset (s) of a monophonic voice playing `notes`."""
    freq = np.zeros(num_samples, dtype=np.float32)
    amp = np.zeros(num_samples, dtype=np.float32)
    age = np.zeros(num_samples, dtype=np.float32)
    for note in notes:
        start = round(note.start * sample_rate)
        end = min(num_samples, start + round(note.length * sample_rate))
        if end <= start:
            continue
        t = np.arange(end - start) / sample_rate
        freq[start:end] = midi_to_hz(note.pitch)
        age[start:end] = t
        amp[start:end] = note.velocity * envelope(t, note.length, attack, decay, sustain, release)
    return freq, amp, age


def cycles(freq: np.ndarray, age: np.ndarray, ratio: float = 1.0) -> np.ndarray:
    """Oscillator phase in cycles [0, 1), restarted at each note onset."""
    phase = freq * np.float32(ratio) * age
    return phase - np.floor(phase)


def sawtooth(phase: np.ndarray, increment: np.ndarray) -> np.ndarray:
    """Band-limited sawtooth (PolyBLEP) from the phase in cycles and its per-sample increment."""
    out = 2.0 * phase - 1.0
    increment = np.maximum(increment, np.float32(1e-6))
    low = np.nonzero(phase < increment)[0]
    x = phase[low] / increment[low]
    out[low] -= 2.0 * x - x * x - 1.0
    high = np.nonzero(phase > 1.0 - increment)[0]
    x = (phase[high] - 1.0) / increment[high]
    out[high] -= x * x + 2.0 * x + 1.0
    return out


def sine(phase: np.ndarray) -> np.ndarray:
    return np.sin(np.float32(2 * np.pi) * phase)


def butterworth(
    x: np.ndarray, cutoff_hz: float, sample_rate: int, kind: str = "lowpass", order: int = 2
) -> np.ndarray:
    """Butterworth low- or high-pass along the last axis (time)."""
    sos = signal.butter(order, min(cutoff_hz, 0.45 * sample_rate), btype=kind, fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x.astype(np.float64)).astype(np.float32)


def smooth(x: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """One-pole low-pass with time constant `seconds`, starting settled at x[0]."""
    pole = math.exp(-1.0 / (seconds * sample_rate))
    sos = np.array([[1.0 - pole, 0.0, 0.0, 1.0, -pole, 0.0]])
    return signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])[0]


def since_onsets(onsets: list[float], num_samples: int, sample_rate: int) -> np.ndarray:
    """Seconds since the latest of `onsets` at every sample (large before the first)."""
    index = np.full(num_samples, -num_samples, dtype=np.int64)
    starts = np.clip(np.round(np.asarray(onsets) * sample_rate).astype(np.int64), 0, num_samples - 1)
    index[starts] = starts
    return (np.arange(num_samples) - np.maximum.accumulate(index)) / sample_rate


def decaying_noise(rng, sample_rate, seconds, decay, band) -> np.ndarray:
    """White noise, high-passed at `band` Hz (or band-passed to a (low, high) `band`), with an exponential decay."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    kind = "highpass" if np.isscalar(band) else "bandpass"
    sos = signal.butter(2, band, btype=kind, fs=sample_rate, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(len(t))) * np.exp(-t / decay)


def filter_sweep(x: np.ndarray, brightness: np.ndarray, dark_hz: float, bright_hz: float, sample_rate: int):
    """A low-pass whose cutoff moves from `bright_hz` to `dark_hz` as `brightness` falls from 1 to 0."""
    dark = butterworth(x, dark_hz, sample_rate, order=4)
    bright = butterworth(x, bright_hz, sample_rate, order=4)
    return dark + brightness.astype(np.float32) * (bright - dark)


def pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Equal-power pan of a mono signal to stereo [2, samples]; position −1 (left) … +1 (right)."""
    angle = (position + 1.0) * np.pi / 4
    return np.stack([mono * np.float32(math.cos(angle)), mono * np.float32(math.sin(angle))])


def reverb(
    mono: np.ndarray, rng: np.random.Generator, seconds: float, sample_rate: int, factor: int = 4
) -> np.ndarray:
    """Stereo wet signal [2, samples] of a diffuse room: decorrelated decaying-noise responses, at 1/`factor` rate."""
    rate = sample_rate / factor
    frames = -(-len(mono) // factor)
    low = np.pad(mono, (0, frames * factor - len(mono))).reshape(frames, factor).mean(axis=1)  # box-car decimation
    t = np.arange(int(seconds * rate)) / rate
    responses = rng.standard_normal((2, len(t))) * np.exp(-6.9 * t / seconds)  # −60 dB at `seconds`
    responses[:, : int(0.015 * rate)] = 0.0  # pre-delay
    responses /= np.sqrt(np.sum(responses**2, axis=1, keepdims=True))
    wet = signal.fftconvolve(low[None, :], responses.astype(np.float32), axes=1)[:, : frames + 1]
    ramp = np.arange(factor, dtype=np.float32) / factor  # linear interpolation back to the full rate
    full = wet[:, :-1, None] + (wet[:, 1:, None] - wet[:, :-1, None]) * ramp
    return full.reshape(2, -1)[:, : len(mono)]


def add_at(track: np.ndarray, sample: np.ndarray, seconds: float, gain: float, sample_rate: int) -> None:
    """Mix a one-shot `sample` into `track` from `seconds` on."""
    start = max(0, round(seconds * sample_rate))
    end = min(len(track), start + len(sample))
    if end > start:
        track[start:end] += np.float32(gain) * sample[: end - start]


def parse_steps(pattern: str) -> list[tuple[int, int, str]]:
    """(step, length in steps, symbol) of every event of a 16-step pattern; '-' holds, '.' rests."""
    events = []
    for step, symbol in enumerate(pattern):
        if symbol not in "-.":
            length = 1
            while step + length < len(pattern) and pattern[step + length] == "-":
                length += 1
            events.append((step, length, symbol))
    return events
