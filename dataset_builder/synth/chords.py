"""The `other` stem: voice-led chords of the progression as a pad, electric piano, organ or pluck."""

from __future__ import annotations

import numpy as np

from dataset_builder.levels import db_to_gain

from .dsp import (
    Note,
    butterworth,
    cycles,
    filter_sweep,
    note_tracks,
    pan,
    parse_steps,
    reverb,
    sawtooth,
    since_onsets,
    sine,
)
from .plan import SongPlan

CHORD_RHYTHMS = {  # X strikes the chord (one note of it for arpeggios); - holds, . rests
    "sustained": "X---------------",
    "halves": "X-------X-------",
    "quarters": "X--.X--.X--.X--.",
    "offbeats": "..X-..X-..X-..X-",
    "syncopated": "X-.X-.X-..X-.X-.",
    "arpeggio": "X-X-X-X-X-X-X-X-",
}
ORGAN_HARMONICS = (1, 3, 2, 4, 6, 8, 10, 12, 16)  # drawbars 16', 5 1/3', 8', 4', 2 2/3', 2', 1 3/5', 1 1/3', 1'


def voice_chord(pitch_classes: list[int], previous: list[int] | None, low: int = 52) -> list[int]:
    """The inversion of the chord, stacked up from `low`, that moves least from the previous voicing."""
    candidates = []
    for inversion in range(len(pitch_classes)):
        notes, floor = [], low
        for pc in pitch_classes[inversion:] + pitch_classes[:inversion]:
            floor += (pc - floor) % 12
            notes.append(floor)
            floor += 1
        candidates.append(notes)
    if previous is None:
        return candidates[len(candidates) // 2]
    return min(candidates, key=lambda notes: sum(abs(a - b) for a, b in zip(notes, previous)))


def chord_voice(chords: dict, freq, amp, age, position: float, sample_rate: int) -> np.ndarray:
    """Stereo signal of one chord voice in the song's timbre."""
    timbre = chords["timbre"]
    if timbre == "pad":  # two detuned saws, one per side
        detune = 2.0 ** (chords["detune_cents"] / 1200)
        sides = [sawtooth(cycles(freq, age, r), freq * r / sample_rate) for r in (detune, 1.0 / detune)]
        return np.stack(sides) * amp
    phase = cycles(freq, age)
    if timbre == "epiano":  # two-operator FM with a decaying index and a short metallic tine
        index = np.float32(chords["fm_index"]) * np.exp(-age / np.float32(chords["fm_index_decay"])) + np.float32(0.2)
        mono = np.sin(np.float32(2 * np.pi) * phase + index * sine(phase))
        mono += np.float32(0.15) * np.exp(-age / np.float32(0.04)) * sine(cycles(freq, age, chords["tine_ratio"]))
    elif timbre == "organ":  # additive drawbars, looked up from one wavetable cycle of the 16' pitch
        weights = [db_to_gain((int(d) - 8) * 3) if d != "0" else 0.0 for d in chords["registration"]]
        x = np.arange(4096) / 4096
        table = sum(w * np.sin(2 * np.pi * h * x) for w, h in zip(weights, ORGAN_HARMONICS)).astype(np.float32)
        mono = table[(cycles(freq, age, 0.5) * 4096).astype(np.int32) & 4095]
    else:  # pluck: a sawtooth, filtered by the caller
        mono = sawtooth(phase, freq / sample_rate)
    return pan(mono * amp, position)


def render_other(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """Voice-led chords of the progression in one timbre and rhythm (strummed together, or arpeggiated)."""
    grid, chords = plan.grid, plan.chords
    last_bar = plan.sections[-1].end_bar
    voicings, previous = [], None
    for bar in range(last_bar + 1):
        previous = voice_chord([(plan.tonic + t) % 12 for t in plan.chord_tones(bar, chords["size"])], previous)
        voicings.append(previous)
    voices = [[] for _ in range(chords["size"])]
    onsets = []
    rhythm = parse_steps(CHORD_RHYTHMS[chords["rhythm"]])
    for section in plan.sections:
        if "other" not in section.stems:
            continue
        for bar in range(section.start_bar, section.end_bar):
            for hit, (step, length, _) in enumerate(rhythm):
                start, velocity = grid.time(bar, step), rng.uniform(0.8, 1.0)
                onsets.append(start)
                if chords["rhythm"] == "arpeggio":
                    voice = hit % chords["size"]
                    voices[voice].append(
                        Note(start, chords["size"] * length * grid.step_seconds, voicings[bar][voice], velocity)
                    )
                else:
                    for voice, pitch in enumerate(voicings[bar]):
                        voices[voice].append(Note(start, length * grid.step_seconds, pitch, velocity))
    if not onsets:
        return np.zeros((2, num_samples), dtype=np.float32)
    spread = np.linspace(-chords["width"], chords["width"], chords["size"]) + plan.pans["other"]
    stereo = np.zeros((2, num_samples), dtype=np.float32)
    for notes, position in zip(voices, spread):
        freq, amp, age = note_tracks(
            notes, num_samples, sample_rate, *(chords[k] for k in ("attack", "decay", "sustain", "release"))
        )
        stereo += chord_voice(chords, freq, amp, age, position, sample_rate)
    if chords["timbre"] == "pad":
        stereo = butterworth(stereo, chords["cutoff_hz"], sample_rate)
    elif chords["timbre"] == "pluck":
        brightness = np.exp(-since_onsets(onsets, num_samples, sample_rate) / chords["brightness_decay"])
        stereo = filter_sweep(stereo, brightness, 400.0, chords["bright_hz"], sample_rate)
    elif chords["timbre"] == "organ":  # rotary-speaker tremolo, a quarter cycle apart between the sides
        t = np.arange(num_samples) / sample_rate * (2 * np.pi * chords["tremolo_hz"])
        stereo *= (1.0 + 0.12 * np.stack([np.sin(t), np.cos(t)])).astype(np.float32)
    stereo /= max(np.abs(stereo).max(), 1e-9)
    return stereo + plan.reverb["other_wet"] * reverb(stereo.mean(axis=0), rng, plan.reverb["seconds"], sample_rate)
