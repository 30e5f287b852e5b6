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
    "strum_eighths": "X-X-X-X-X-X-X-X-",
    "strum_folk": "X---X-X---X-X-X-",
}
GUITAR_LOW_E, GUITAR_A = 40, 45  # MIDI pitches of the two lowest open strings
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


def chord_voicings(plan: SongPlan, size: int) -> list[list[int]]:
    """MIDI pitches of the chord of every bar (one bar past the song too), voice-led from bar to bar."""
    voicings, previous = [], None
    for bar in range(plan.sections[-1].end_bar + 1):
        previous = voice_chord([(plan.tonic + t) % 12 for t in plan.chord_tones(bar, size)], previous)
        voicings.append(previous)
    return voicings


def barre_chord(root: int, third: int, fifth: int) -> list[int]:
    """The strings of a barre chord on `root` (MIDI), its `third` and `fifth` in semitones above the root: the E shape
    (six strings) for a root on the low E string, the A shape (five strings) for a root on the A string."""
    strings = [root, root + fifth, root + 12, root + 12 + third, root + 12 + fifth, root + 24]
    return strings if root < GUITAR_A else strings[:5]


def guitar_voicings(plan: SongPlan) -> list[list[int]]:
    """Barre chords of every bar (one bar past the song too), rooted between E2 and D#3."""
    voicings = []
    for bar in range(plan.sections[-1].end_bar + 1):
        root, third, fifth = plan.chord_tones(bar)
        low = GUITAR_LOW_E + (plan.tonic + root - GUITAR_LOW_E) % 12
        voicings.append(barre_chord(low, third - root, fifth - root))
    return voicings


def chord_notes(plan: SongPlan, rng: np.random.Generator, rhythm: str, voicings: list[list[int]]) -> list[Note]:
    """The chords where `other` plays, struck on the steps of `rhythm` (a CHORD_RHYTHMS name): every note of the bar's
    voicing at once, or for "arpeggio" one note a step, rising, each held while the next ones play."""
    grid, notes = plan.grid, []
    pattern = parse_steps(CHORD_RHYTHMS[rhythm])
    for section in plan.sections:
        if "other" not in section.stems:
            continue
        for bar in range(section.start_bar, section.end_bar):
            voicing = voicings[bar]
            for hit, (step, length, _) in enumerate(pattern):
                start, velocity = grid.time(bar, step), rng.uniform(0.8, 1.0)
                if rhythm == "arpeggio":
                    voice = hit % len(voicing)
                    seconds = len(voicing) * length * grid.step_seconds
                    notes.append(Note(start, seconds, voicing[voice], velocity, voice))
                else:
                    seconds = length * grid.step_seconds
                    notes.extend(Note(start, seconds, pitch, velocity, voice) for voice, pitch in enumerate(voicing))
    return notes


def render_other(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """Voice-led chords of the progression in one timbre and rhythm (strummed together, or arpeggiated)."""
    chords = plan.chords
    notes = chord_notes(plan, rng, chords["rhythm"], chord_voicings(plan, chords["size"]))
    if not notes:
        return np.zeros((2, num_samples), dtype=np.float32)
    voices = [[n for n in notes if n.voice == voice] for voice in range(chords["size"])]
    onsets = [n.start for n in notes]
    spread = np.linspace(-chords["width"], chords["width"], chords["size"]) + plan.pans["other"]
    stereo = np.zeros((2, num_samples), dtype=np.float32)
    for voice_notes, position in zip(voices, spread):
        freq, amp, age = note_tracks(
            voice_notes, num_samples, sample_rate, *(chords[k] for k in ("attack", "decay", "sustain", "release"))
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
