"""The `vocals` stem: a glottal-pulse source through vowel formants, singing phrases of the scale."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import signal

from dataset_builder.levels import db_to_gain

from .dsp import MIN_SAMPLE_RATE, add_at, butterworth, decaying_noise, midi_to_hz, pan, reverb, smooth
from .plan import Grid, SongPlan, pick, uniform

VOWELS = {  # formant frequencies and bandwidths (Hz), F1..F5
    "tenor": {
        "a": ((650, 1080, 2650, 2900, 3250), (80, 90, 120, 130, 140)),
        "e": ((400, 1700, 2600, 3200, 3580), (70, 80, 100, 120, 120)),
        "i": ((290, 1870, 2800, 3250, 3540), (40, 90, 100, 120, 120)),
        "o": ((400, 800, 2600, 2800, 3000), (40, 80, 100, 120, 120)),
        "u": ((350, 600, 2700, 2900, 3300), (40, 80, 100, 120, 120)),
    },
    "alto": {
        "a": ((800, 1150, 2800, 3500, 4950), (80, 90, 120, 130, 140)),
        "e": ((400, 1600, 2700, 3300, 4950), (60, 80, 120, 150, 200)),
        "i": ((350, 1700, 2700, 3700, 4950), (50, 100, 120, 150, 200)),
        "o": ((450, 800, 2830, 3500, 4950), (70, 80, 100, 130, 135)),
        "u": ((325, 700, 2530, 3500, 4950), (50, 60, 170, 180, 200)),
    },
}
VOWEL_WEIGHTS = {"a": 0.3, "e": 0.2, "i": 0.15, "o": 0.2, "u": 0.15}
VOWEL_NAMES = tuple(VOWEL_WEIGHTS)
CONSONANTS = {None: 0.55, "s": 0.15, "sh": 0.1, "t": 0.2}
AIR_DB = -30.0  # level of the glottal source above 4.5 kHz, added to the voice, relative to the voice
MELODY_DURATIONS = (2, 2, 2, 3, 4, 4, 6, 8)  # in steps
MELODY_MOVES = (-3, -2, -1, -1, -1, 0, 0, 1, 1, 1, 2, 3)  # in scale steps


@dataclass(frozen=True)
class SungNote:
    step: int  # from the start of the progression cycle (of the song, in `vocal_melody`)
    length: int  # steps
    pitch: int
    vowels: tuple[str, str]  # the vowel moves from the first to the second over the note
    consonant: str | None
    velocity: float


def compose_melody(rng: np.random.Generator, plan: SongPlan, kind: str) -> list[SungNote]:
    """Phrases over one progression cycle, each followed by a rest: a scale walk that lands on chord tones."""
    block_bars = 2 if Grid(plan.tempo).bar_seconds < 2.2 else 1
    center = plan.voice["center"] + (3 if kind == "chorus" else 0)
    pitches = [p for p in range(center - 9, center + 10) if (p - plan.tonic) % 12 in plan.scale]
    index = int(np.argmin([abs(p - center) for p in pitches]))
    melody = []
    for block in range(0, plan.cycle_bars * 16, block_bars * 16):
        step = block + int(pick(rng, (0, 0, 2, 4)))
        end = block + block_bars * 16 - int(pick(rng, (4, 6, 8)))
        while step < end:
            length = int(pick(rng, MELODY_DURATIONS))
            length = end - step if end - step - length <= 2 else length
            if step > block and rng.random() < 0.08:  # a breath inside the phrase
                step += length
                continue
            index = int(np.clip(index + pick(rng, MELODY_MOVES), 0, len(pitches) - 1))
            if step % 8 == 0 or step + length >= end:
                chord = {(plan.tonic + t) % 12 for t in plan.chord_tones(step // 16)}
                index = min((i for i, p in enumerate(pitches) if p % 12 in chord), key=lambda i: (abs(i - index), i))
            first = pick(rng, VOWEL_WEIGHTS)
            second = pick(rng, VOWEL_WEIGHTS) if rng.random() < 0.25 else first
            melody.append(
                SungNote(step, length, pitches[index], (first, second), pick(rng, CONSONANTS), uniform(rng, 0.8, 1.0))
            )
            step += length
    return melody


def glottal_flow(phase: np.ndarray, rise: float, fall: float) -> np.ndarray:
    """Rosenberg glottal pulse over one period: opening (raised cosine), closing (quarter cosine), closed."""
    opening = 0.5 * (1.0 - np.cos(np.float32(np.pi / rise) * phase))
    closing = np.cos(np.float32(0.5 * np.pi / fall) * (phase - np.float32(rise)))
    return np.where(phase < rise, opening, np.where(phase < rise + fall, closing, np.float32(0.0)))


def formant_filter(register: str, vowel: str, sample_rate: int) -> np.ndarray:
    """Cascade of unit-DC-gain two-pole resonators at the vowel's formants (second-order sections)."""
    sections = []
    for freq, bandwidth in zip(*VOWELS[register][vowel]):
        radius = math.exp(-math.pi * bandwidth / sample_rate)
        a1, a2 = -2 * radius * math.cos(2 * math.pi * freq / sample_rate), radius * radius
        sections.append([1.0 + a1 + a2, 0.0, 0.0, 1.0, a1, a2])
    return np.array(sections)


def consonant_sample(rng: np.random.Generator, consonant: str, sample_rate: int) -> np.ndarray:
    """A fricative ("s", "sh") or plosive ("t") noise burst, peak-normalised."""
    seconds, band, decay = {
        "s": (0.09, (4000.0, 10000.0), 0.04),
        "sh": (0.09, (2000.0, 6000.0), 0.04),
        "t": (0.03, (2000.0, 7000.0), 0.008),
    }[consonant]
    x = decaying_noise(rng, sample_rate, seconds, decay, band)
    if consonant != "t":  # fricatives swell in before fading
        x *= np.minimum(np.arange(len(x)) / (0.03 * sample_rate), 1.0)
    return (x / np.abs(x).max()).astype(np.float32)


def vocal_melody(plan: SongPlan, rng: np.random.Generator) -> list[SungNote]:
    """Every sung note of the song, `step` counted from its start: one melody per section kind, sung every cycle."""
    melodies: dict[str, list[SungNote]] = {}
    notes = []
    for section in plan.sections:
        if "vocals" not in section.stems:
            continue
        # A kind's first melody is kept; one is composed for every section all the same (its draws shape the song).
        melody = melodies.setdefault(section.kind, compose_melody(rng, plan, section.kind))
        for cycle_bar in range(section.start_bar, section.end_bar, plan.cycle_bars):
            notes.extend(replace(note, step=16 * cycle_bar + note.step) for note in melody)
    return notes


def vocal_score(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int):
    """Per-sample MIDI pitch (NaN where nothing is sung), loudness, seconds since the note's onset and vowel
    index, and the consonants as (kind, onset in seconds, velocity)."""
    grid, sr = plan.grid, sample_rate
    pitch = np.full(num_samples, np.nan)
    level = np.zeros(num_samples, dtype=np.float32)
    age = np.zeros(num_samples, dtype=np.float32)
    vowel = np.full(num_samples, -1, dtype=np.int8)
    consonants = []
    for note in vocal_melody(plan, rng):
        onset = grid.time(0, note.step)
        start = round(onset * sr)
        end = min(num_samples, round(grid.time(0, note.step + note.length) * sr))
        if end <= start:
            continue
        pitch[start:end], level[start:end] = note.pitch, note.velocity
        age[start:end] = np.arange(end - start) / sr
        turn = start + int(0.6 * (end - start))
        vowel[start:turn], vowel[turn:end] = (VOWEL_NAMES.index(v) for v in note.vowels)
        if note.consonant:
            level[start : start + int(0.04 * sr)] *= 0.35
            consonants.append((note.consonant, onset - (0.06 if note.consonant != "t" else 0.0), note.velocity))
    return pitch, level, age, vowel, consonants


def sing(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """The mono lead voice: legato phrases with glides, delayed vibrato, vowels per note and consonant onsets."""
    voice, sr = plan.voice, sample_rate
    pitch, level, age, vowel, consonants = vocal_score(plan, rng, num_samples, sr)
    sung = ~np.isnan(pitch)
    if not sung.any():
        return np.zeros(num_samples, dtype=np.float32)
    held = np.where(sung, np.arange(num_samples), 0)
    held[: np.argmax(sung)] = np.argmax(sung)
    held = np.maximum.accumulate(held)  # outside notes, hold the last note's pitch and vowel
    t = np.arange(num_samples, dtype=np.float32) / np.float32(sr)
    vibrato = np.float32(voice["vibrato_cents"] / 100) * np.clip((age - 0.18) / 0.3, 0.0, 1.0)
    vibrato *= np.sin(np.float32(2 * np.pi * voice["vibrato_hz"]) * t)
    knots = np.arange(0.0, num_samples / sr + 0.5, 0.25)
    drift = np.interp(t, knots, 0.06 * rng.standard_normal(len(knots)))
    f0 = midi_to_hz(smooth(pitch[held], voice["glide"], sr) + vibrato + drift)
    phase = np.mod(np.cumsum(f0 / sr), 1.0).astype(np.float32)
    flow = glottal_flow(phase, voice["pulse_rise"], voice["pulse_fall"])
    source = np.diff(flow, prepend=np.float32(0.0)) * (sr / f0).astype(np.float32)
    source += voice["breathiness"] * rng.standard_normal(num_samples, dtype=np.float32) * (0.25 + flow)
    source *= smooth(level, 0.025, sr).astype(np.float32)
    vowel = vowel[held]
    mono = np.zeros(num_samples, dtype=np.float32)
    for v in np.unique(vowel):
        weight = smooth((vowel == v).astype(np.float64), 0.03, sr)
        mono += (weight * signal.sosfilt(formant_filter(voice["register"], VOWEL_NAMES[v], sr), source)).astype(
            np.float32
        )
    air = butterworth(source, 4500.0, sr, "highpass")  # breath and edge above the formants
    mono += air * np.float32(db_to_gain(AIR_DB) * np.std(mono) / max(np.std(air), 1e-9))
    mono /= max(np.abs(mono).max(), 1e-9)
    samples = {c: consonant_sample(rng, c, sr) for c in ("s", "sh", "t")}
    for consonant, onset, velocity in consonants:
        add_at(mono, samples[consonant], onset, 0.12 * velocity, sr)
    return mono


def render_vocals(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """The lead voice, sung at half rate when that still covers 11 kHz (twice as fast), panned, with reverb."""
    rate = sample_rate // 2 if sample_rate % 2 == 0 and sample_rate >= 2 * MIN_SAMPLE_RATE else sample_rate
    mono = sing(plan, rng, -(-num_samples * rate // sample_rate), rate)
    if rate != sample_rate:
        mono = signal.resample_poly(mono, 2, 1)[:num_samples].astype(np.float32)
    return pan(mono, plan.pans["vocals"]) + plan.reverb["vocals_wet"] * reverb(
        mono, rng, plan.reverb["seconds"], sample_rate
    )
