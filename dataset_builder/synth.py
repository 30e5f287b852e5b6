"""Procedural multitrack songs in the MUSDB18HQ layout: a band of drums, bass, chords and a sung lead.

`synthesize_corpus` writes `train/<track>/` and `test/<track>/` folders holding `bass.wav`, `drums.wav`,
`other.wav`, `vocals.wav` and `mixture.wav` (stereo PCM_16; the mixture is exactly the sum of the stems) and a
`corpus.json` with the seed and every song's parameters. Everything is drawn from the seed, so the same seed
gives byte-identical files. Songs vary in tempo, key, mode, progression, groove, timbres, arrangement (sections
where a stem is silent) and in the level of each stem, so the "correct" balance differs from song to song.
"""

from __future__ import annotations

import json
import math
import numbers
import pathlib
import shutil
import tempfile
from dataclasses import asdict, dataclass

import numpy as np
import soundfile as sf
from scipy import signal
from tqdm import tqdm

STEMS = ("bass", "drums", "other", "vocals")  # = processing_mixingbuddy.STEMS (not imported: it loads transformers)
NOMINAL_RMS_DBFS = {"bass": -21.0, "drums": -20.0, "other": -23.0, "vocals": -20.0}  # RMS where a stem plays
LEVEL_SPREAD_DB = 3.0  # each song draws each stem's level uniformly within ±this of its nominal RMS
PEAK_CEILING = 10 ** (-1.0 / 20)  # a song whose mixture or a stem would peak above −1 dBFS is scaled down
FADE_OUT_SECONDS = 0.5
MIN_SAMPLE_RATE = 22050

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
MODE_WEIGHTS = (0.4, 0.4, 0.1, 0.1)
PROGRESSIONS = {  # 0-based scale degrees, one chord each; triads are stacked thirds of the mode
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (1, 4, 0, 5), (0, 3, 5, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (5, 6, 0, 0)),
    "dorian": ((0, 3, 0, 3), (0, 3, 6, 0), (0, 6, 3, 0)),
    "mixolydian": ((0, 6, 3, 0), (0, 3, 6, 3), (0, 6, 0, 3)),
}

# Arrangement: the song opens with an intro (songs of 30 s or more), then cycles through a form.
FORMS = (
    ("verse", "chorus", "verse", "chorus", "breakdown", "chorus"),
    ("verse", "verse", "chorus", "instrumental", "verse", "chorus", "chorus"),
    ("verse", "chorus", "breakdown", "verse", "chorus", "instrumental", "chorus"),
    ("verse", "breakdown", "chorus", "verse", "chorus", "instrumental"),
)
SECTION_STEMS = {  # the stem sets a section of each kind may have
    "intro": (("other",), ("drums", "other"), ("bass", "other"), ("bass", "drums", "other")),
    "verse": (STEMS, STEMS, ("bass", "drums", "vocals")),
    "chorus": (STEMS,),
    "breakdown": (("other", "vocals"), ("bass", "other", "vocals"), ("other",)),
    "instrumental": (("bass", "drums", "other"),),
    "outro": (("other",), ("drums", "other"), ("bass", "other"), ("bass", "drums", "other")),
}
MIN_INTRO_SECONDS = 10.0

# Patterns have 16 steps per bar (sixteenth notes).
VELOCITIES = {"X": 1.0, "x": 0.75, "o": 0.3}
GROOVES = {
    "rock": {
        "kick": "X.......X.x.....",
        "snare": "....X.......X...",
        "hat": "x.x.x.x.x.x.x.x.",
        "open_hat": "................",
    },
    "four_on_the_floor": {
        "kick": "X...X...X...X...",
        "snare": "....X.......X...",
        "hat": "x...x...x...x...",
        "open_hat": "..x...x...x...x.",
    },
    "funk": {
        "kick": "X..x......X..x..",
        "snare": "....X..o.o..X..o",
        "hat": "xoxoxoxoxoxoxoxo",
        "open_hat": "................",
    },
    "half_time": {
        "kick": "X.....x...x.....",
        "snare": "........X.......",
        "hat": "x.x.x.x.x.x.x.x.",
        "open_hat": "..............x.",
    },
    "boom_bap": {
        "kick": "X......x..X.....",
        "snare": "....X.......X...",
        "hat": "x.xox.xox.xox.xo",
        "open_hat": "................",
    },
    "breakbeat": {
        "kick": "X.x.......xX....",
        "snare": "....X..o.o..X..o",
        "hat": "x.x.x.x.x.x.x.x.",
        "open_hat": "................",
    },
}
SWUNG_GROOVES = ("funk", "boom_bap")
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
BASS_PATTERNS = {  # R root, 3 third, 5 fifth, O octave, A approach to the next chord; - holds, . rests
    "eighths": "R-R-R-R-R-R-R-R-",
    "root_fifth": "R---5---O---5---",
    "octaves": "R-O-R-O-R-O-R-O-",
    "syncopated": "R--R--R---R-5-O-",
    "sustained": "R-------5-------",
    "walking": "R---3---5---A---",
    "pushed": "R-----R-..R-R-A-",
}
BASS_SOUNDS = {  # saw/sine mix and a low-pass whose cutoff falls from bright to dark after each onset
    "pluck": {"saw": 1.0, "sine": 0.4, "dark_hz": 250.0, "bright_hz": 2200.0, "sustain": 0.5},
    "sub": {"saw": 0.25, "sine": 1.0, "dark_hz": 300.0, "bright_hz": 900.0, "sustain": 0.85},
    "fingered": {"saw": 0.7, "sine": 0.7, "dark_hz": 400.0, "bright_hz": 1400.0, "sustain": 0.6},
}
CHORD_RHYTHMS = {  # X strikes the chord (one note of it for arpeggios); - holds, . rests
    "sustained": "X---------------",
    "halves": "X-------X-------",
    "quarters": "X--.X--.X--.X--.",
    "offbeats": "..X-..X-..X-..X-",
    "syncopated": "X-.X-.X-..X-.X-.",
    "arpeggio": "X-X-X-X-X-X-X-X-",
}
CHORD_TIMBRE_RHYTHMS = {
    "pad": ("sustained", "halves"),
    "epiano": ("quarters", "syncopated", "halves", "offbeats"),
    "organ": ("sustained", "offbeats", "halves"),
    "pluck": ("arpeggio", "syncopated", "offbeats"),
}
ORGAN_HARMONICS = (1, 3, 2, 4, 6, 8, 10, 12, 16)  # drawbars 16', 5 1/3', 8', 4', 2 2/3', 2', 1 3/5', 1 1/3', 1'
ORGAN_REGISTRATIONS = ("888000000", "808000000", "688600000", "838000004", "886400000")
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
VOICE_CENTERS = {"tenor": (55, 60), "alto": (62, 67)}  # MIDI range of the melody's centre
VOWEL_WEIGHTS = {"a": 0.3, "e": 0.2, "i": 0.15, "o": 0.2, "u": 0.15}
VOWEL_NAMES = tuple(VOWEL_WEIGHTS)
CONSONANTS = {None: 0.55, "s": 0.15, "sh": 0.1, "t": 0.2}
AIR_DB = -30.0  # level of the glottal source above 4.5 kHz, added to the voice, relative to the voice
MELODY_DURATIONS = (2, 2, 2, 3, 4, 4, 6, 8)  # in steps
MELODY_MOVES = (-3, -2, -1, -1, -1, 0, 0, 1, 1, 1, 2, 3)  # in scale steps

ARTIST_WORDS = (
    "Velvet Paper Neon Silver Hollow Amber Midnight Copper Static Golden Lunar Crimson Quiet Electric Wild Glass "
    "Northern Broken Honey Iron".split(),
    "Harbour Foxes Satellites Orchard Lanterns Engines Tides Pilots Echoes Rivers Machines Sparrows Canyons Ghosts "
    "Parade Comets Wolves Gardens Signals Owls".split(),
)
TITLE_WORDS = (
    "Slow Distant Falling Open Hidden Endless Morning Running Silent Burning Heavy Summer Little Blue Faded Golden "
    "Winter Second Paper Restless".split(),
    "Lights Motion Hearts Roads Skies Water Houses Stars Lines Shadows Dreams Windows Fire Waves Days Letters "
    "Mountains Streets Rain Colours".split(),
)


# ---------------------------------------------------------------------------------------------
# The plan of a song: every random choice, saved to corpus.json.
# ---------------------------------------------------------------------------------------------


@dataclass
class Section:
    """A run of bars in which a fixed set of stems plays."""

    kind: str
    start_bar: int
    bars: int
    stems: tuple[str, ...]

    @property
    def end_bar(self) -> int:
        return self.start_bar + self.bars


@dataclass
class SongPlan:
    """Everything drawn for one song: harmony, groove, sounds, arrangement, levels and panning."""

    track: str
    split: str
    tempo: float
    tonic: int
    mode: str
    progression: tuple[int, ...]
    bars_per_chord: int
    groove: str
    swing: float  # delay of odd sixteenths, as a fraction of a sixteenth
    bass: dict
    chords: dict
    voice: dict
    reverb: dict
    sections: list[Section]
    levels_db: dict[str, float]
    pans: dict[str, float]

    @property
    def scale(self) -> tuple[int, ...]:
        return MODES[self.mode]

    @property
    def grid(self) -> Grid:
        return Grid(self.tempo, self.swing)

    @property
    def cycle_bars(self) -> int:
        return self.bars_per_chord * len(self.progression)

    def chord_tones(self, bar: int, size: int = 3) -> list[int]:
        """Semitones above the tonic of the chord playing in `bar` (stacked thirds of the mode)."""
        degree = self.progression[(bar // self.bars_per_chord) % len(self.progression)]
        return [self.scale[(degree + 2 * k) % 7] + 12 * ((degree + 2 * k) // 7) for k in range(size)]

    def chord_name(self, bar: int) -> str:
        root, third, fifth = self.chord_tones(bar)
        quality = "" if third - root == 4 else ("dim" if fifth - root == 6 else "m")
        return NOTE_NAMES[(self.tonic + root) % 12] + quality

    def bar_activity(self, stem: str, num_bars: int) -> np.ndarray:
        """Boolean per bar: whether `stem` plays."""
        active = np.zeros(num_bars, dtype=bool)
        for section in self.sections:
            if stem in section.stems:
                active[section.start_bar : section.end_bar] = True
        return active


@dataclass(frozen=True)
class Grid:
    """Musical time: 4/4 bars of 16 steps; odd steps are delayed by `swing` of a step."""

    tempo: float
    swing: float = 0.0

    @property
    def step_seconds(self) -> float:
        return 15.0 / self.tempo

    @property
    def bar_seconds(self) -> float:
        return 240.0 / self.tempo

    def time(self, bar: int, step: int) -> float:
        return (bar * 16 + step + (self.swing if step % 2 else 0.0)) * self.step_seconds


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)), 3)


def pick(rng: np.random.Generator, options, weights=None):
    """One of `options` (a sequence or the keys of a dict of weights), as a plain Python object."""
    if isinstance(options, dict):
        options, weights = list(options), list(options.values())
    index = rng.choice(len(options), p=None if weights is None else np.asarray(weights) / np.sum(weights))
    return options[int(index)]


def track_names(seed: int, count: int) -> list[str]:
    """`count` distinct MUSDB-style names "Artist - Title", from their own random stream."""
    rng = np.random.default_rng([seed, 1 << 32])
    names: list[str] = []
    while len(names) < count:
        artist = f"{pick(rng, ARTIST_WORDS[0])} {pick(rng, ARTIST_WORDS[1])}"
        if rng.random() < 0.4:
            artist = "The " + artist
        title = (
            pick(rng, TITLE_WORDS[1])
            if rng.random() < 0.3
            else f"{pick(rng, TITLE_WORDS[0])} {pick(rng, TITLE_WORDS[1])}"
        )
        name = f"{artist} - {title}"
        if name.lower() not in {n.lower() for n in names}:
            names.append(name)
    return names


def plan_sections(rng: np.random.Generator, seconds: float, grid: Grid, cycle_bars: int) -> list[Section]:
    """An intro (songs of 30 s or more; at least 10 s long), then the form, cycled, then an outro (songs of 45 s or
    more). Sections are whole progression cycles; one that would start in the last half cycle is left out."""
    cycle_seconds = cycle_bars * grid.bar_seconds
    sections: list[Section] = []

    def add(kind: str, cycles: int) -> None:
        start = sections[-1].end_bar if sections else 0
        sections.append(Section(kind, start, cycles * cycle_bars, pick(rng, SECTION_STEMS[kind])))

    def remaining() -> float:
        return seconds - (sections[-1].end_bar * grid.bar_seconds if sections else 0.0)

    if seconds >= 30:
        add("intro", math.ceil(MIN_INTRO_SECONDS / cycle_seconds))
    reserve = max(1, round(8.0 / cycle_seconds)) * cycle_seconds if seconds >= 45 else 0.5 * cycle_seconds
    form, intro = pick(rng, FORMS), len(sections)
    while not sections or remaining() > reserve:
        add(form[(len(sections) - intro) % len(form)], max(1, round(uniform(rng, 8.0, 18.0) / cycle_seconds)))
    if remaining() > 0.5 * cycle_seconds:
        add("outro", math.ceil(remaining() / cycle_seconds))
    elif remaining() > 0:
        sections[-1].bars += cycle_bars
    return sections


def plan_chord_sound(rng: np.random.Generator, timbre: str) -> dict:
    """Rhythm, voicing size, stereo width, envelope and timbre parameters of the `other` stem."""
    sound = {
        "timbre": timbre,
        "rhythm": pick(rng, CHORD_TIMBRE_RHYTHMS[timbre]),
        "size": 4 if timbre == "epiano" and rng.random() < 0.6 else 3,
        "width": uniform(rng, 0.2, 0.6),
        "attack": uniform(rng, 0.1, 0.35) if timbre == "pad" else 0.004,
        "decay": uniform(rng, 0.25, 0.6) if timbre == "pluck" else uniform(rng, 0.8, 1.6),
        "sustain": 0.8 if timbre in ("pad", "organ") else 0.15,
        "release": 0.2 if timbre == "pad" else 0.06,
    }
    if timbre == "pad":
        sound.update(detune_cents=uniform(rng, 6.0, 14.0), cutoff_hz=uniform(rng, 1200.0, 3000.0))
    elif timbre == "epiano":
        sound.update(
            fm_index=uniform(rng, 1.5, 3.5),
            fm_index_decay=uniform(rng, 0.2, 0.6),
            tine_ratio=pick(rng, (7.0, 11.0, 14.0)),
        )
    elif timbre == "organ":
        sound.update(registration=pick(rng, ORGAN_REGISTRATIONS), tremolo_hz=uniform(rng, 5.0, 6.8))
    else:
        sound.update(brightness_decay=uniform(rng, 0.05, 0.15), bright_hz=uniform(rng, 2500.0, 5000.0))
    return sound


def plan_song(
    rng: np.random.Generator, track: str, split: str, seconds: float, level_spread_db: float = LEVEL_SPREAD_DB
) -> SongPlan:
    """Draw every choice of one song; each stem's level is drawn within ±`level_spread_db` of its nominal level."""
    tempo = round(float(rng.uniform(80.0, 150.0)), 1)
    mode = pick(rng, list(MODES), MODE_WEIGHTS)
    tonic = int(rng.integers(12))
    progression = pick(rng, PROGRESSIONS[mode])
    grid = Grid(tempo)
    bars_per_chord = 1 if 4 * grid.bar_seconds >= 8.0 else int(rng.integers(1, 3))
    groove = pick(rng, list(GROOVES))
    swing = uniform(rng, 0.08, 0.3) if groove in SWUNG_GROOVES else 0.0
    bass_sound = pick(rng, list(BASS_SOUNDS))
    bass = {
        "sound": bass_sound,
        "patterns": {kind: pick(rng, list(BASS_PATTERNS)) for kind in SECTION_STEMS},
        "decay": uniform(rng, 0.2, 0.6),
        "brightness_decay": uniform(rng, 0.05, 0.25),
        "gate": uniform(rng, 0.7, 0.95),
        **BASS_SOUNDS[bass_sound],
    }
    chords = plan_chord_sound(rng, pick(rng, list(CHORD_TIMBRE_RHYTHMS)))
    register = pick(rng, list(VOICE_CENTERS))
    voice = {
        "register": register,
        "center": int(rng.integers(VOICE_CENTERS[register][0], VOICE_CENTERS[register][1] + 1)),
        "vibrato_hz": uniform(rng, 4.8, 6.2),
        "vibrato_cents": uniform(rng, 20.0, 55.0),
        "glide": uniform(rng, 0.02, 0.06),
        "breathiness": uniform(rng, 0.05, 0.3),
        "pulse_rise": uniform(rng, 0.35, 0.45),
        "pulse_fall": uniform(rng, 0.12, 0.2),
    }
    reverb = {
        "seconds": uniform(rng, 0.8, 2.0),
        "vocals_wet": uniform(rng, 0.15, 0.35),
        "other_wet": uniform(rng, 0.1, 0.3),
    }
    sections = plan_sections(rng, seconds, grid, bars_per_chord * len(progression))
    levels_db = {stem: uniform(rng, -level_spread_db, level_spread_db) for stem in STEMS}
    pans = {
        "bass": uniform(rng, -0.05, 0.05),
        "drums": uniform(rng, -0.1, 0.1),
        "other": uniform(rng, -0.2, 0.2),
        "vocals": uniform(rng, -0.1, 0.1),
    }
    return SongPlan(
        track,
        split,
        tempo,
        tonic,
        mode,
        progression,
        bars_per_chord,
        groove,
        swing,
        bass,
        chords,
        voice,
        reverb,
        sections,
        levels_db,
        pans,
    )


# ---------------------------------------------------------------------------------------------
# Signal building blocks.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    length: float  # seconds, release included
    pitch: float  # MIDI
    velocity: float = 1.0


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


# ---------------------------------------------------------------------------------------------
# Drums.
# ---------------------------------------------------------------------------------------------


def decaying_noise(rng, sample_rate, seconds, decay, band) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    kind = "highpass" if np.isscalar(band) else "bandpass"
    sos = signal.butter(2, band, btype=kind, fs=sample_rate, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(len(t))) * np.exp(-t / decay)


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


def render_drums(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """Groove bars, a fill at the end of most sections, a crash at the start of most; each drum panned."""
    kit = drum_kit(rng, sample_rate)
    grid = plan.grid
    tracks = {name: np.zeros(num_samples, dtype=np.float32) for name in kit}
    for section in plan.sections:
        if "drums" not in section.stems:
            continue
        sparse = section.kind in ("intro", "outro") and rng.random() < 0.5
        fill = pick(rng, list(FILLS)) if rng.random() < 0.75 and section.bars >= 2 else None
        crash = rng.random() < 0.8
        for bar in range(section.start_bar, section.end_bar):
            last = bar == section.end_bar - 1
            hits = groove_hits(rng, GROOVES[plan.groove], section.kind, sparse, 8 if fill and last else 16)
            if fill and last:
                hits += FILLS[fill]
            if crash and bar == section.start_bar:
                hits = [h for h in hits if not (h[0] == "hat" and h[1] == 0)] + [("crash", 0, 0.8)]
            for instrument, step, velocity in hits:
                add_at(
                    tracks[instrument],
                    kit[instrument],
                    grid.time(bar, step) + rng.normal(0, 0.003),
                    velocity,
                    sample_rate,
                )
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


# ---------------------------------------------------------------------------------------------
# Bass.
# ---------------------------------------------------------------------------------------------


def bass_pitch(plan: SongPlan, bar: int, symbol: str) -> int:
    """MIDI pitch (E1…D#2 register) of a bass-pattern symbol over the chord of `bar`."""
    tones = plan.chord_tones(bar)
    root = 28 + (plan.tonic + tones[0] - 28) % 12
    if symbol == "A":  # a semitone below the next chord's root
        return 28 + (plan.tonic + plan.chord_tones(bar + 1)[0] - 28) % 12 - 1
    return root + {"R": 0, "3": tones[1] - tones[0], "5": tones[2] - tones[0], "O": 12}[symbol]


def render_bass(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """The chord roots in a per-section pattern; saw and sine through a plucked low-pass, lightly saturated."""
    grid, sound = plan.grid, plan.bass
    notes = []
    for section in plan.sections:
        if "bass" not in section.stems:
            continue
        pattern = parse_steps(BASS_PATTERNS[sound["patterns"][section.kind]])
        for bar in range(section.start_bar, section.end_bar):
            for step, length, symbol in pattern:
                velocity = rng.uniform(0.85, 1.0) * (1.0 if step % 4 == 0 else 0.9)
                notes.append(
                    Note(
                        grid.time(bar, step),
                        length * grid.step_seconds * sound["gate"],
                        bass_pitch(plan, bar, symbol),
                        velocity,
                    )
                )
    if not notes:
        return np.zeros((2, num_samples), dtype=np.float32)
    freq, amp, age = note_tracks(notes, num_samples, sample_rate, 0.004, sound["decay"], sound["sustain"], 0.03)
    phase = cycles(freq, age)
    raw = amp * (sound["saw"] * sawtooth(phase, freq / sample_rate) + sound["sine"] * sine(phase))
    brightness = np.exp(-since_onsets([n.start for n in notes], num_samples, sample_rate) / sound["brightness_decay"])
    mono = filter_sweep(raw, brightness, sound["dark_hz"], sound["bright_hz"], sample_rate)
    mono = np.tanh(1.5 * mono / max(np.abs(mono).max(), 1e-9))
    return pan(mono, plan.pans["bass"])


# ---------------------------------------------------------------------------------------------
# Other: chords.
# ---------------------------------------------------------------------------------------------


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
        weights = [10 ** ((int(d) - 8) * 3 / 20) if d != "0" else 0.0 for d in chords["registration"]]
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


# ---------------------------------------------------------------------------------------------
# Vocals: a glottal-pulse source through vowel formants, singing phrases of the scale.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SungNote:
    step: int  # from the start of the progression cycle
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


def vocal_score(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int):
    """Per-sample MIDI pitch (NaN where nothing is sung), loudness, seconds since the note's onset and vowel
    index, and the consonants as (kind, onset in seconds, velocity)."""
    grid, sr = plan.grid, sample_rate
    melodies: dict[str, list[SungNote]] = {}
    pitch = np.full(num_samples, np.nan)
    level = np.zeros(num_samples, dtype=np.float32)
    age = np.zeros(num_samples, dtype=np.float32)
    vowel = np.full(num_samples, -1, dtype=np.int8)
    consonants = []
    for section in plan.sections:
        if "vocals" not in section.stems:
            continue
        melody = melodies.setdefault(section.kind, compose_melody(rng, plan, section.kind))
        for cycle_bar in range(section.start_bar, section.end_bar, plan.cycle_bars):
            for note in melody:
                onset = grid.time(cycle_bar, note.step)
                start = round(onset * sr)
                end = min(num_samples, round(grid.time(cycle_bar, note.step + note.length) * sr))
                if end <= start:
                    continue
                pitch[start:end], level[start:end] = note.pitch, note.velocity
                age[start:end] = np.arange(end - start) / sr
                turn = start + int(0.6 * (end - start))
                vowel[start:turn], vowel[turn:end] = (VOWEL_NAMES.index(v) for v in note.vowels)
                if note.consonant:
                    level[start : start + int(0.04 * sr)] *= 0.35
                    consonants.append(
                        (note.consonant, onset - (0.06 if note.consonant != "t" else 0.0), note.velocity)
                    )
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
    mono += air * np.float32(10 ** (AIR_DB / 20) * np.std(mono) / max(np.std(air), 1e-9))
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


# ---------------------------------------------------------------------------------------------
# A song, and the corpus.
# ---------------------------------------------------------------------------------------------

RENDERERS = {"bass": render_bass, "drums": render_drums, "other": render_other, "vocals": render_vocals}


def db(x: float) -> float:
    return 20.0 * math.log10(max(x, 1e-12))


def active_mask(plan: SongPlan, stem: str, num_samples: int, sample_rate: int) -> np.ndarray:
    """Boolean per sample: inside a section where `stem` plays."""
    bar_samples = Grid(plan.tempo).bar_seconds * sample_rate
    bars = plan.bar_activity(stem, plan.sections[-1].end_bar)
    return bars[np.minimum((np.arange(num_samples) / bar_samples).astype(np.int64), len(bars) - 1)]


def render_song(plan: SongPlan, seed_sequence: np.random.SeedSequence, num_samples: int, sample_rate: int):
    """The four stems as int16 arrays [samples, 2] (their sum is the mixture), the song gain and the stem levels.

    Each stem is scaled so its RMS where it plays is its nominal level plus the song's `levels_db`; then the whole
    song is scaled down if the mixture or a stem would peak above −1 dBFS. The levels are those of the result
    (RMS in dBFS where the stem plays, before PCM rounding; None for a stem that never plays).
    """
    fade = np.minimum(1.0, (num_samples - np.arange(num_samples)) / (FADE_OUT_SECONDS * sample_rate)).astype(
        np.float32
    )
    stems, masks = {}, {}
    for stem, rng in zip(STEMS, map(np.random.default_rng, seed_sequence.spawn(len(STEMS)))):
        audio = RENDERERS[stem](plan, rng, num_samples, sample_rate) * fade
        masks[stem] = active_mask(plan, stem, num_samples, sample_rate)
        rms = rms_where(audio, masks[stem])
        target = 10 ** ((NOMINAL_RMS_DBFS[stem] + plan.levels_db[stem]) / 20)
        stems[stem] = audio * np.float32(target / rms) if rms > 0 else audio
    peak = max(np.abs(sum(stems.values())).max(), *(np.abs(x).max() for x in stems.values()))
    gain = min(1.0, PEAK_CEILING / max(peak, 1e-9))
    pcm = {stem: np.ascontiguousarray(np.rint(x.T * (gain * 32768.0)).astype(np.int16)) for stem, x in stems.items()}
    levels = {
        stem: round(NOMINAL_RMS_DBFS[stem] + plan.levels_db[stem] + db(gain), 2) if masks[stem].any() else None
        for stem in STEMS
    }
    return pcm, round(db(gain), 2), levels


def rms_where(audio: np.ndarray, mask: np.ndarray) -> float:
    """RMS of stereo `audio` [2, samples] over the samples where `mask` is true (0 if none)."""
    count = int(mask.sum())
    return math.sqrt(float(np.square(audio).sum(axis=0) @ mask.astype(np.float32)) / (2 * count)) if count else 0.0


def silent_spans(plan: SongPlan, stem: str, seconds: float) -> list[list[float]]:
    """[start, end] seconds of the song's stretches where `stem` does not play."""
    bar_seconds, spans = Grid(plan.tempo).bar_seconds, []
    for section in plan.sections:
        start, end = section.start_bar * bar_seconds, min(section.end_bar * bar_seconds, seconds)
        if stem in section.stems or start >= seconds:
            continue
        if spans and math.isclose(spans[-1][1], round(start, 3)):
            spans[-1][1] = round(end, 3)
        else:
            spans.append([round(start, 3), round(end, 3)])
    return spans


def describe(plan: SongPlan, seconds: float, song_gain_db: float, rms_dbfs: dict[str, float]) -> dict:
    """The JSON record of one song."""
    bar_seconds = Grid(plan.tempo).bar_seconds
    record = asdict(plan)
    record["key"] = f"{NOTE_NAMES[plan.tonic]} {plan.mode}"
    record["chord_names"] = [plan.chord_name(bar) for bar in range(0, plan.cycle_bars, plan.bars_per_chord)]
    record["sections"] = [
        {
            "kind": s.kind,
            "start_sec": round(s.start_bar * bar_seconds, 3),
            "end_sec": round(min(s.end_bar * bar_seconds, seconds), 3),
            "stems": list(s.stems),
        }
        for s in plan.sections
        if s.start_bar * bar_seconds < seconds
    ]
    record["silent"] = {stem: silent_spans(plan, stem, seconds) for stem in STEMS}
    record["song_gain_db"] = song_gain_db
    record["rms_dbfs"] = rms_dbfs
    return record


def split_sizes(songs: int, test_songs: int | None) -> tuple[int, int]:
    """(train, test) song counts; by default a fifth (at least one) is test, except that a single song is train."""
    if test_songs is None:
        test_songs = max(1, round(0.2 * songs)) if songs > 1 else 0
    if not isinstance(test_songs, numbers.Integral) or isinstance(test_songs, bool) or not 0 <= test_songs <= songs:
        raise ValueError(f"test_songs must be an integer from 0 to songs ({songs}), got {test_songs!r}")
    return songs - int(test_songs), int(test_songs)


def check_arguments(songs, seconds, seed, sample_rate, level_spread_db=LEVEL_SPREAD_DB) -> None:
    def is_int(x):
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)

    if not is_int(songs) or songs < 1:
        raise ValueError(f"songs must be an integer >= 1, got {songs!r}")
    if not isinstance(seconds, numbers.Real) or isinstance(seconds, bool) or not 10 <= seconds < math.inf:
        raise ValueError(f"seconds must be a finite number >= 10, got {seconds!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not is_int(sample_rate) or sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be an integer >= {MIN_SAMPLE_RATE}, got {sample_rate!r}")
    if not isinstance(level_spread_db, numbers.Real) or not 0 <= level_spread_db <= 12:
        raise ValueError(f"level_spread_db must be a number from 0 to 12, got {level_spread_db!r}")


def synthesize_corpus(
    out_dir,
    songs: int,
    seconds: float,
    seed: int,
    *,
    sample_rate: int = 44100,
    test_songs: int | None = None,
    level_spread_db: float = LEVEL_SPREAD_DB,
    progress: bool = True,
) -> pathlib.Path:
    """Write a MUSDB18HQ-layout corpus of `songs` procedural songs of `seconds` each and return its folder.

    Layout: `out_dir/{train,test}/<Artist - Title>/{bass,drums,other,vocals,mixture}.wav` (stereo PCM_16 at
    `sample_rate`; the mixture is exactly the sum of the stems) and `out_dir/corpus.json` (the seed and every
    song's parameters: tempo, key, progression, sounds, sections, silent spans, levels). The first songs go to
    train and the last `test_songs` to test (default: a fifth, at least one, but a single song goes to train). Each
    stem's level in a song is drawn within ±`level_spread_db` of its nominal level: the "right" balance varies.
    Song `i` depends only on `seed` and `i`, and the same arguments give byte-identical files.

    The corpus is built in a temporary sibling folder and renamed into place, so an error leaves nothing behind.
    Raises `ValueError` for a bad argument (naming it) and `FileExistsError` if `out_dir` exists and is not empty.
    """
    check_arguments(songs, seconds, seed, sample_rate, level_spread_db)
    songs, seconds, seed, sample_rate = int(songs), float(seconds), int(seed), int(sample_rate)
    num_train, _ = split_sizes(songs, test_songs)
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"out_dir {str(out_dir)!r} exists and is not empty")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        num_samples = round(seconds * sample_rate)
        records = []
        for split in ("train", "test"):
            (staging / split).mkdir()
        for index, track in enumerate(
            tqdm(track_names(seed, songs), desc="synth-stems", unit="song", disable=not progress)
        ):
            split = "train" if index < num_train else "test"
            song_seeds = np.random.SeedSequence([seed, index])
            plan_seed, render_seed = song_seeds.spawn(2)
            plan = plan_song(np.random.default_rng(plan_seed), track, split, seconds, level_spread_db)
            pcm, song_gain_db, rms_dbfs = render_song(plan, render_seed, num_samples, sample_rate)
            folder = staging / split / track
            folder.mkdir()
            for stem, audio in pcm.items():
                sf.write(folder / f"{stem}.wav", audio, sample_rate, subtype="PCM_16")
            mixture = np.sum([x.astype(np.int32) for x in pcm.values()], axis=0).astype(np.int16)
            sf.write(folder / "mixture.wav", mixture, sample_rate, subtype="PCM_16")
            records.append(describe(plan, seconds, song_gain_db, rms_dbfs))
        corpus = {
            "generator": "dataset_builder.synth",
            "seed": seed,
            "songs": songs,
            "seconds": seconds,
            "sample_rate": sample_rate,
            "stems": list(STEMS),
            "nominal_rms_dbfs": NOMINAL_RMS_DBFS,
            "level_spread_db": level_spread_db,
            "tracks": records,
        }
        (staging / "corpus.json").write_text(json.dumps(corpus, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
