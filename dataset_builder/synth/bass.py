"""The `bass` stem: the chord roots in a per-section pattern, played by a plucked saw-and-sine synth."""

from __future__ import annotations

import dataclasses

import numpy as np

from .dsp import Note, cycles, filter_sweep, note_tracks, pan, parse_steps, sawtooth, since_onsets, sine
from .plan import BASS_PATTERNS, SongPlan


def bass_pitch(plan: SongPlan, bar: int, symbol: str) -> int:
    """MIDI pitch (E1…D#2 register) of a bass-pattern symbol over the chord of `bar`."""
    tones = plan.chord_tones(bar)
    root = 28 + (plan.tonic + tones[0] - 28) % 12
    if symbol == "A":  # a semitone below the next chord's root
        return 28 + (plan.tonic + plan.chord_tones(bar + 1)[0] - 28) % 12 - 1
    return root + {"R": 0, "3": tones[1] - tones[0], "5": tones[2] - tones[0], "O": 12}[symbol]


def bass_notes(plan: SongPlan, rng: np.random.Generator) -> list[Note]:
    """The bass line: each section's pattern over the chord roots, notes lasting their full pattern steps."""
    grid, patterns = plan.grid, plan.bass["patterns"]
    notes = []
    for section in plan.sections:
        if "bass" not in section.stems:
            continue
        pattern = parse_steps(BASS_PATTERNS[patterns[section.kind]])
        for bar in range(section.start_bar, section.end_bar):
            for step, length, symbol in pattern:
                velocity = rng.uniform(0.85, 1.0) * (1.0 if step % 4 == 0 else 0.9)
                pitch = bass_pitch(plan, bar, symbol)
                notes.append(Note(grid.time(bar, step), length * grid.step_seconds, pitch, velocity))
    return notes


def render_bass(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """The chord roots in a per-section pattern; saw and sine through a plucked low-pass, lightly saturated."""
    sound = plan.bass
    notes = [dataclasses.replace(n, length=n.length * sound["gate"]) for n in bass_notes(plan, rng)]
    if not notes:
        return np.zeros((2, num_samples), dtype=np.float32)
    freq, amp, age = note_tracks(notes, num_samples, sample_rate, 0.004, sound["decay"], sound["sustain"], 0.03)
    phase = cycles(freq, age)
    raw = amp * (sound["saw"] * sawtooth(phase, freq / sample_rate) + sound["sine"] * sine(phase))
    brightness = np.exp(-since_onsets([n.start for n in notes], num_samples, sample_rate) / sound["brightness_decay"])
    mono = filter_sweep(raw, brightness, sound["dark_hz"], sound["bright_hz"], sample_rate)
    mono = np.tanh(1.5 * mono / max(np.abs(mono).max(), 1e-9))
    return pan(mono, plan.pans["bass"])
