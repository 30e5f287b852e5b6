"""The plan of a song: every random choice (harmony, groove, sounds, arrangement, levels, GM instruments), saved to
corpus.json."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

LEVEL_SPREAD_DB = 3.0  # each song draws each stem's level uniformly within ±this of its nominal loudness

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
CHORD_TIMBRE_RHYTHMS = {
    "pad": ("sustained", "halves"),
    "epiano": ("quarters", "syncopated", "halves", "offbeats"),
    "organ": ("sustained", "offbeats", "halves"),
    "pluck": ("arpeggio", "syncopated", "offbeats"),
}
ORGAN_REGISTRATIONS = ("888000000", "808000000", "688600000", "838000004", "886400000")
VOICE_CENTERS = {"tenor": (55, 60), "alto": (62, 67)}  # MIDI range of the melody's centre

# General MIDI instruments of the sampled engine (`soundfont`): 0-based programs of bank 0 with their GM names, and
# drum kits, the programs of bank 128 (GS kits, which FluidR3_GM has).
GM_DRUM_BANK = 128
GM_DRUM_KITS = {0: "Standard", 8: "Room", 16: "Power", 24: "Electronic", 25: "TR-808", 32: "Jazz", 40: "Brush"}
GM_DRUM_KIT_WEIGHTS = (0.25, 0.2, 0.15, 0.1, 0.1, 0.1, 0.1)
GM_BASSES = {
    32: "Acoustic Bass",
    33: "Electric Bass (finger)",
    34: "Electric Bass (pick)",
    35: "Fretless Bass",
    36: "Slap Bass 1",
    37: "Slap Bass 2",
    38: "Synth Bass 1",
    39: "Synth Bass 2",
}
GM_KEYS = {
    0: "Acoustic Grand Piano",
    1: "Bright Acoustic Piano",
    2: "Electric Grand Piano",
    3: "Honky-tonk Piano",
    4: "Electric Piano 1",
    5: "Electric Piano 2",
    6: "Harpsichord",
    7: "Clavi",
}
GM_ORGANS = {16: "Drawbar Organ", 17: "Percussive Organ", 18: "Rock Organ", 19: "Church Organ"}
GM_GUITARS = {
    24: "Acoustic Guitar (nylon)",
    25: "Acoustic Guitar (steel)",
    26: "Electric Guitar (jazz)",
    27: "Electric Guitar (clean)",
    28: "Electric Guitar (muted)",
    29: "Overdriven Guitar",
}
GM_STRINGS = {48: "String Ensemble 1", 49: "String Ensemble 2", 50: "SynthStrings 1", 51: "SynthStrings 2"}
GM_PADS = {
    88: "Pad 1 (new age)",
    89: "Pad 2 (warm)",
    90: "Pad 3 (polysynth)",
    91: "Pad 4 (choir)",
    92: "Pad 5 (bowed)",
    93: "Pad 6 (metallic)",
    94: "Pad 7 (halo)",
    95: "Pad 8 (sweep)",
}
GM_VOICES = {52: "Choir Aahs", 53: "Voice Oohs", 54: "Synth Voice", 85: "Lead 6 (voice)"}
GM_LEADS = {
    40: "Violin",
    56: "Trumpet",
    64: "Soprano Sax",
    65: "Alto Sax",
    66: "Tenor Sax",
    67: "Baritone Sax",
    68: "Oboe",
    71: "Clarinet",
    73: "Flute",
    80: "Lead 1 (square)",
    81: "Lead 2 (sawtooth)",
}
MELODY_RANGES = {  # MIDI range of each vocal stand-in; 32 semitones or more, so whole octaves fit a melody into it
    **dict.fromkeys((52, 53), (43, 81)),
    **dict.fromkeys((54, 85, 80, 81), (48, 88)),
    40: (55, 91),
    56: (52, 86),
    64: (56, 88),
    65: (49, 81),
    66: (44, 76),
    67: (36, 69),
    68: (58, 91),
    71: (50, 89),
    73: (60, 96),
}
OTHER_FAMILIES = {  # the `other` stem's GM programs and the chords.CHORD_RHYTHMS each family plays
    "keys": (GM_KEYS, ("quarters", "syncopated", "halves", "offbeats", "arpeggio")),
    "organ": (GM_ORGANS, ("sustained", "offbeats", "halves")),
    "guitar": (GM_GUITARS, ("strum_eighths", "strum_folk", "arpeggio")),
    "strings": (GM_STRINGS, ("sustained", "halves")),
    "pad": (GM_PADS, ("sustained", "halves")),
}
GM_DRUM_KEYS = {  # each kit piece's GM percussion keys (one drawn per song)
    "kick": (36, 35),  # Bass Drum 1, Acoustic Bass Drum
    "snare": (38, 40),  # Acoustic Snare, Electric Snare
    "hat": (42,),  # Closed Hi-Hat
    "open_hat": (46,),  # Open Hi-Hat
    "crash": (49, 57),  # Crash Cymbal 1, 2
    "tom_high": (50, 48),  # High Tom, Hi-Mid Tom
    "tom_mid": (47, 45),  # Low-Mid Tom, Low Tom
    "tom_low": (43, 41),  # High Floor Tom, Low Floor Tom
    "ride": (51, 59),  # Ride Cymbal 1, 2: keeps time instead of the closed hat in some sections
    "ride_bell": (53,),  # Ride Bell: instead of the open hat where the ride keeps time
}
RIDE_SECTIONS = {  # the section kinds where the ride keeps time (none, choruses, ..., all), with their weights
    (): 0.55,
    ("chorus",): 0.25,
    ("chorus", "instrumental"): 0.1,
    tuple(SECTION_STEMS): 0.1,
}
CHORD_VOICINGS = ("triad", "triad", "seventh")  # of `other` instruments other than guitars (they play barre chords)
ARTICULATIONS = {"legato": (0.9, 1.0), "detached": (0.45, 0.75)}  # the fraction of its length a note is held

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
    """Everything drawn for one song: harmony, groove, sounds, arrangement, levels, panning and GM instruments."""

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
    instruments: dict  # the GM instruments and performance of each stem in the sampled engine (`soundfont`)

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


def plan_performance(rng: np.random.Generator, articulated: bool = True) -> dict:
    """How a stem is played: velocity scale and jitter, timing jitter (standard deviation, ms) and, unless it is
    drums, an articulation and the fraction of each note's length it is held (its gate)."""
    performance = {
        "velocity_scale": uniform(rng, 0.55, 1.0),
        "velocity_jitter": uniform(rng, 0.02, 0.1),
        "timing_ms": uniform(rng, 2.0, 10.0),
    }
    if articulated:
        articulation = pick(rng, list(ARTICULATIONS))
        performance.update(articulation=articulation, gate=uniform(rng, *ARTICULATIONS[articulation]))
    return performance


def melody_transpose(center: int, low: int, high: int) -> int:
    """Semitones (whole octaves) that move a melody around `center` (−9 … +12 semitones, choruses included) into the
    range `low` … `high` (at least 32 semitones wide)."""
    if center - 9 < low:
        return 12 * math.ceil((low - center + 9) / 12)
    return -12 * math.ceil(max(0, center + 12 - high) / 12)


def plan_instruments(rng: np.random.Generator, voice_center: int) -> dict:
    """Each stem's GM instrument (bank, program, GM name) and performance; the kit's keys and where a ride keeps time;
    the `other` stem's family, rhythm, playing style and voicing; the vocal stand-in's family and transposition."""
    kit = pick(rng, list(GM_DRUM_KITS), GM_DRUM_KIT_WEIGHTS)
    drums = {
        "bank": GM_DRUM_BANK,
        "program": kit,
        "name": GM_DRUM_KITS[kit],
        "keys": {piece: pick(rng, keys) for piece, keys in GM_DRUM_KEYS.items()},
        "ride_sections": list(pick(rng, RIDE_SECTIONS)),
        **plan_performance(rng, articulated=False),
    }
    bass = pick(rng, list(GM_BASSES))
    family = pick(rng, list(OTHER_FAMILIES))
    programs, rhythms = OTHER_FAMILIES[family]
    other, rhythm = pick(rng, list(programs)), pick(rng, rhythms)
    style = "arpeggio" if rhythm == "arpeggio" else "strum" if rhythm.startswith("strum") else "block"
    lead_family = pick(rng, ("voice", "lead"))
    lead_programs = GM_VOICES if lead_family == "voice" else GM_LEADS
    lead = pick(rng, list(lead_programs))
    return {
        "drums": drums,
        "bass": {"bank": 0, "program": bass, "name": GM_BASSES[bass], **plan_performance(rng)},
        "other": {
            "bank": 0,
            "program": other,
            "name": programs[other],
            "family": family,
            "rhythm": rhythm,
            "style": style,
            "voicing": "barre" if family == "guitar" else pick(rng, CHORD_VOICINGS),
            "strum_ms": uniform(rng, 6.0, 18.0) if style == "strum" else 0.0,  # between neighbouring strings
            **plan_performance(rng),
        },
        "vocals": {
            "bank": 0,
            "program": lead,
            "name": lead_programs[lead],
            "family": lead_family,
            "transpose": melody_transpose(voice_center, *MELODY_RANGES[lead]),
            **plan_performance(rng),
        },
    }


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
    instruments = plan_instruments(rng, voice["center"])  # drawn last: the procedural engine's draws come first
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
        instruments,
    )
