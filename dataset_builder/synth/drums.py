"""The `drums` stem: a synthesized kit playing the song's groove, with fills and crashes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from .dsp import add_at, decaying_noise, pan
from .plan import GROOVES, SongPlan, pick

VELOCITIES = {"X": 1.0, "x": 0.75, "o": 0.3}  # of the symbols of a groove pattern
FILLS = {  # (instrument, step, velocity) over the second half of a section's last bar
    "snare_roll": tuple(("snare", s, 0.35 + 0.65 * (s - 8) / 7) for s in range(8, 16)),
    "toms": tuple(
        (f"tom_{t}", s, 0.8 + 0.1 * (s % 2)) for t, s in zip(("high",) * 3 + ("mid",) * 3 + ("low",) * 2, range(8, 16))
    ),
    "snare_toms": (
        ("snare", 8, 0.8),
        ("snare", 10, 0.8),
        ("tom_high", 12, 0.9),
        ("tom_mid", 13, 0.9),
        ("tom_low", 14, 1.0),
        ("tom_low", 15, 1.0),
    ),
    "kick_snare": (
        ("kick", 8, 0.9),
        ("snare", 10, 0.9),
        ("kick", 11, 0.8),
        ("snare", 12, 0.9),
        ("snare", 14, 1.0),
        ("snare", 15, 1.0),
    ),
}


def swept_sine(sample_rate, seconds, start_hz, end_hz, sweep, decay) -> np.ndarray:
    """A sine whose pitch falls exponentially from `start_hz` to `end_hz`, with an exponential decay."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    freq = end_hz + (start_hz - end_hz) * np.exp(-t / sweep)
    return np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / decay)


def cymbal(rng, sample_rate, seconds, decay, low_hz) -> np.ndarray:
    """Six inharmonic square waves plus noise, high-passed: hats and crash."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    base = rng.uniform(300.0, 420.0)
    metal = sum(np.sign(np.sin(2 * np.pi * base * r * t)) for r in (2.0, 3.0, 4.16, 5.43, 6.79, 8.21)) / 6
    sos = signal.butter(4, low_hz, btype="highpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, 0.6 * metal + rng.standard_normal(len(t))) * np.exp(-t / decay)


def drum_kit(rng: np.random.Generator, sample_rate: int) -> dict[str, np.ndarray]:
    """One-shot samples, each peak-normalised."""
    sr = sample_rate
    kick = swept_sine(
        sr, 0.5, rng.uniform(120, 200), rng.uniform(42, 58), rng.uniform(0.02, 0.05), rng.uniform(0.12, 0.3)
    )
    kick = np.tanh(1.6 * (kick + rng.uniform(0.2, 0.5) * decaying_noise(rng, sr, 0.5, 0.003, (1000.0, 8000.0))))
    snare = rng.uniform(0.6, 1.0) * decaying_noise(rng, sr, 0.4, rng.uniform(0.06, 0.15), (1200.0, 9000.0))
    snare += rng.uniform(0.25, 0.5) * (
        swept_sine(sr, 0.4, 240, 185, 0.02, 0.06) + 0.5 * swept_sine(sr, 0.4, 400, 330, 0.01, 0.04)
    )
    tom = rng.uniform(0.9, 1.1)
    kit = {
        "kick": kick,
        "snare": snare,
        "hat": cymbal(rng, sr, 0.15, rng.uniform(0.015, 0.035), 7000.0),
        "open_hat": cymbal(rng, sr, 0.6, rng.uniform(0.15, 0.25), 6000.0),
        "crash": cymbal(rng, sr, 2.5, rng.uniform(0.6, 1.0), 4000.0),
        **{
            f"tom_{name}": swept_sine(sr, 0.5, 1.5 * hz * tom, hz * tom, 0.04, 0.25)
            for name, hz in (("high", 190.0), ("mid", 140.0), ("low", 100.0))
        },
    }
    return {name: (x / np.abs(x).max()).astype(np.float32) for name, x in kit.items()}


def groove_hits(rng: np.random.Generator, groove: dict[str, str], kind: str, sparse: bool, until: int):
    """(instrument, step, velocity) of one bar of the groove before step `until`, with small random variations."""
    hits = []
    for instrument, pattern in groove.items():
        if sparse and instrument in ("snare", "open_hat"):
            continue
        for step, symbol in enumerate(pattern[:until]):
            if symbol != "." and not (instrument == "hat" and groove["open_hat"][step] != "."):
                accent = 1.1 if kind == "chorus" and "hat" in instrument else 1.0
                hits.append((instrument, step, VELOCITIES[symbol] * accent * rng.uniform(0.85, 1.0)))
    if rng.random() < 0.25:
        extra = int(pick(rng, (2, 6, 7, 10, 14, 15)))
        if extra < until and groove["kick"][extra] == ".":
            hits.append(("kick", extra, 0.6))
    return hits


@dataclass(frozen=True)
class DrumHit:
    """One stroke of a kit piece."""

    piece: str  # kick, snare, hat, open_hat, crash, tom_high, tom_mid or tom_low
    start: float  # seconds
    velocity: float
    section: str  # the kind of section it is played in


def drum_hits(plan: SongPlan, rng: np.random.Generator) -> list[DrumHit]:
    """Groove bars, a fill at the end of most sections and a crash at the start of most, each hit a few ms early or
    late."""
    grid, hits = plan.grid, []
    for section in plan.sections:
        if "drums" not in section.stems:
            continue
        sparse = section.kind in ("intro", "outro") and rng.random() < 0.5
        fill = pick(rng, list(FILLS)) if rng.random() < 0.75 and section.bars >= 2 else None
        crash = rng.random() < 0.8
        for bar in range(section.start_bar, section.end_bar):
            last = bar == section.end_bar - 1
            bar_hits = groove_hits(rng, GROOVES[plan.groove], section.kind, sparse, 8 if fill and last else 16)
            if fill and last:
                bar_hits += FILLS[fill]
            if crash and bar == section.start_bar:
                bar_hits = [h for h in bar_hits if not (h[0] == "hat" and h[1] == 0)] + [("crash", 0, 0.8)]
            for piece, step, velocity in bar_hits:
                hits.append(DrumHit(piece, grid.time(bar, step) + rng.normal(0, 0.003), velocity, section.kind))
    return hits


def render_drums(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """Groove bars, a fill at the end of most sections, a crash at the start of most; each drum panned."""
    kit = drum_kit(rng, sample_rate)
    tracks = {name: np.zeros(num_samples, dtype=np.float32) for name in kit}
    for hit in drum_hits(plan, rng):
        add_at(tracks[hit.piece], kit[hit.piece], hit.start, hit.velocity, sample_rate)
    side = 1.0 if rng.random() < 0.5 else -1.0
    positions = {
        "kick": 0.0,
        "snare": 0.05 * side,
        "hat": 0.3 * side,
        "open_hat": 0.3 * side,
        "crash": -0.35 * side,
        "tom_high": 0.3 * side,
        "tom_mid": 0.0,
        "tom_low": -0.3 * side,
    }
    return sum(pan(tracks[name], positions[name] + plan.pans["drums"]) for name in tracks)
