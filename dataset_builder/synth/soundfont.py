"""The sampled-instrument engine: the song plans' scores played by General MIDI instruments from a SoundFont.

Each stem plays the score the procedural engine plays (`bass_notes`, `chord_notes`, `drum_hits`, `vocal_melody`) on
the instrument `SongPlan.instruments` draws for it, humanised (timing and velocity jitter, articulation), through
TinySoundFont (`pip install --no-deps tinysoundfont==0.3.7`). Events are sample-accurate; notes are released at their
end and ring out, for at most `TAIL_SECONDS` into a section where the stem is silent. Every stem starts from a reset
synthesizer, so a plan and a random generator give the same audio in any order and in any process.

The SoundFont (`find_soundfont`: by default Debian's fluid-soundfont-gm, FluidR3_GM, MIT licence) is loaded once per
process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib

import numpy as np

from .bass import bass_notes
from .chords import chord_notes, chord_voicings, guitar_voicings
from .drums import DrumHit, drum_hits
from .dsp import Note, reverb
from .plan import GM_DRUM_BANK, Grid, SongPlan
from .vocals import vocal_melody

SOUNDFONT_ENV = "MIXINGBUDDY_SOUNDFONT"
DEFAULT_SOUNDFONTS = (
    pathlib.Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    pathlib.Path("/usr/share/sounds/sf2/default-GM.sf2"),
)
SOUNDFONT_HINT = (
    f"run `apt-get install fluid-soundfont-gm` (as root) or set {SOUNDFONT_ENV} to a General MIDI .sf2 file"
)
TINYSOUNDFONT_HINT = "pip install --no-deps tinysoundfont==0.3.7"

MAX_VOICES = 256
SETTLE_SECONDS = 0.05  # rendered and dropped after a reset: TinySoundFont fades the stopped voices out over 10 ms
TAIL_SECONDS = 1.0  # how long a stem rings on into a stretch where it does not play, before it fades out
FADE_SECONDS = 0.1
FRAME_BYTES = 8  # a stereo float32 frame
DRUM_CHANNEL, MELODY_CHANNEL = 9, 0
PAN_CONTROLLER = 10
HUSH, RELEASE, STRIKE = 0, 1, 2  # event kinds, in the order they apply at the same sample
CHORD_SIZES = {"triad": 3, "seventh": 4}
RIDE_PIECES = {"hat": "ride", "open_hat": "ride_bell"}  # what the ride plays in the sections where it keeps time
UPSTROKE_VELOCITY = 0.8  # of a strum from the highest string, relative to a downstroke (from the lowest)


class SoundFontNotFoundError(FileNotFoundError):
    """No SoundFont where one was looked for."""


def find_soundfont(path: str | os.PathLike | None = None) -> pathlib.Path:
    """The SoundFont to play: `path`, else $MIXINGBUDDY_SOUNDFONT, else the first of `DEFAULT_SOUNDFONTS` present.

    Raises `SoundFontNotFoundError`, with a one-line message saying how to get one, if that file does not exist.
    """
    chosen = path or os.environ.get(SOUNDFONT_ENV)
    if chosen:
        if not pathlib.Path(chosen).is_file():
            raise SoundFontNotFoundError(f"SoundFont {chosen} does not exist: {SOUNDFONT_HINT}")
        return pathlib.Path(chosen)
    for candidate in DEFAULT_SOUNDFONTS:
        if candidate.is_file():
            return candidate
    looked = " or ".join(map(str, DEFAULT_SOUNDFONTS))
    raise SoundFontNotFoundError(f"No General MIDI SoundFont at {looked}: {SOUNDFONT_HINT}")


@functools.lru_cache(maxsize=1)
def load_soundfont(path: pathlib.Path):
    """A TinySoundFont `Synth` holding the SoundFont at `path`, and the SoundFont's id: loaded once per process."""
    try:
        import tinysoundfont
    except ImportError as error:
        raise ImportError(f"The SoundFont engine needs tinysoundfont: {TINYSOUNDFONT_HINT}") from error
    synth = tinysoundfont.Synth()
    return synth, synth.sfload(str(path), max_voices=MAX_VOICES)


def reset_synth(sample_rate: int):
    """The process's `Synth` and SoundFont id, rendering at `sample_rate` with every voice and channel reset."""
    synth, sfid = load_soundfont(find_soundfont())  # first: it says how to install tinysoundfont when it is missing
    from tinysoundfont._tinysoundfont import OutputMode

    font = synth.soundfonts[sfid]
    font.reset()  # stops every voice (quickly fading it out) and drops every channel's settings
    font.set_output(OutputMode.StereoInterleaved, sample_rate, synth.gain)  # `Synth` sets its rate only on loading
    synth.samplerate = sample_rate
    synth.generate_simple(round(SETTLE_SECONDS * sample_rate))
    return synth, sfid


def playable_preset(synth, sfid: int, instrument: dict) -> tuple[int, int]:
    """(bank, program) of `instrument` in the SoundFont: a drum kit the SoundFont lacks falls back to the standard kit
    (0); raises `ValueError` for a missing melodic program (the SoundFont is not General MIDI)."""
    bank, program = instrument["bank"], instrument["program"]
    if synth.sfpreset_name(sfid, bank, program) is not None:
        return bank, program
    if bank == GM_DRUM_BANK:
        return bank, 0
    raise ValueError(f"The SoundFont has no program {program} ({instrument['name']}): {SOUNDFONT_HINT}")


def preset_names(plan: SongPlan) -> dict[str, str]:
    """The SoundFont's name of the preset that plays each stem of `plan`."""
    synth, sfid = load_soundfont(find_soundfont())
    return {
        stem: synth.sfpreset_name(sfid, *playable_preset(synth, sfid, instrument))
        for stem, instrument in plan.instruments.items()
    }


def perform(notes: list[Note], rng: np.random.Generator, performance: dict) -> list[Note]:
    """The notes as played: a few ms early or late, velocities scaled and jittered, held for the articulation's
    gate (a fraction of their length; without a gate, as for drums, they are one-shots, never released)."""
    shifts = rng.normal(0.0, performance["timing_ms"] / 1000, len(notes)).tolist()
    accents = (performance["velocity_scale"] * rng.normal(1.0, performance["velocity_jitter"], len(notes))).tolist()
    gate = performance.get("gate", 0.0)
    return [
        dataclasses.replace(note, start=note.start + shift, length=note.length * gate, velocity=note.velocity * accent)
        for note, shift, accent in zip(notes, shifts, accents)
    ]


def note_events(notes: list[Note], sample_rate: int) -> list[tuple[int, int, int, int]]:
    """(sample, kind, key, MIDI velocity) of each note's strike and, unless it is a one-shot (length 0), release."""
    events = []
    for note in notes:
        start = max(0, round(note.start * sample_rate))
        events.append((start, STRIKE, int(note.pitch), int(np.clip(round(127 * note.velocity), 1, 127))))
        if note.length > 0:
            end = max(start + 1, round((note.start + note.length) * sample_rate))
            events.append((end, RELEASE, int(note.pitch), 0))
    return events


def section_gate(plan: SongPlan, stem: str, num_samples: int, sample_rate: int) -> tuple[np.ndarray, list[int]]:
    """Gain per sample [samples] that lets `stem` ring `TAIL_SECONDS` into each stretch where it stops playing, then
    fades it out over `FADE_SECONDS` and keeps it silent until shortly before it plays again; and the sample where each
    fade ends."""
    bar_samples = plan.grid.bar_seconds * sample_rate
    active = plan.bar_activity(stem, plan.sections[-1].end_bar)
    gate = np.ones(num_samples, dtype=np.float32)
    fade_ends = []
    for stop in np.flatnonzero(active[:-1] & ~active[1:]) + 1:
        resumes = np.flatnonzero(active[stop:])
        resume = (stop + resumes[0]) * bar_samples if len(resumes) else num_samples
        fade_start = round(stop * bar_samples + TAIL_SECONDS * sample_rate)
        fade_end = fade_start + round(FADE_SECONDS * sample_rate)
        span = np.arange(fade_start, min(round(resume - FADE_SECONDS * sample_rate), num_samples))
        gate[span] = np.clip((fade_end - span) / (fade_end - fade_start), 0.0, 1.0)
        fade_ends.append(fade_end)
    return gate, fade_ends


def play(synth, channel: int, events: list[tuple[int, int, int, int]], num_samples: int) -> np.ndarray:
    """Render `events` on `channel`, each at its sample: float32 [2, samples]."""
    frames = np.zeros((num_samples, 2), dtype=np.float32)
    buffer = memoryview(frames.reshape(-1).view(np.uint8))
    position = 0
    for sample, kind, key, velocity in sorted(events):
        if sample >= num_samples:
            break
        if sample > position:
            synth.generate_simple(sample - position, buffer=buffer[position * FRAME_BYTES : sample * FRAME_BYTES])
            position = sample
        if kind == HUSH:
            synth.sounds_off(channel)
        elif kind == RELEASE:
            synth.noteoff(channel, key)
        else:
            synth.noteon(channel, key, velocity)
    if position < num_samples:
        synth.generate_simple(num_samples - position, buffer=buffer[position * FRAME_BYTES :])
    return np.ascontiguousarray(frames.T)


def render_stem(
    plan: SongPlan,
    stem: str,
    notes: list[Note],
    rng: np.random.Generator,
    num_samples: int,
    sample_rate: int,
    room: bool = False,
) -> np.ndarray:
    """`notes` played by `stem`'s instrument at its pan, with the song's reverb if `room`, silenced where the stem
    does not play, peak-normalised: float32 [2, samples]."""
    synth, sfid = reset_synth(sample_rate)
    channel = DRUM_CHANNEL if stem == "drums" else MELODY_CHANNEL
    bank, program = playable_preset(synth, sfid, plan.instruments[stem])
    synth.program_select(channel, sfid, bank, program, bank == GM_DRUM_BANK)
    synth.control_change(channel, PAN_CONTROLLER, round(63.5 * (1.0 + plan.pans[stem])))
    gate, fade_ends = section_gate(plan, stem, num_samples, sample_rate)
    events = note_events(notes, sample_rate) + [(sample, HUSH, 0, 0) for sample in fade_ends]
    stereo = play(synth, channel, events, num_samples)  # [2, samples]
    if room:
        wet = plan.reverb[f"{stem}_wet"] * reverb(stereo.mean(axis=0), rng, plan.reverb["seconds"], sample_rate)
        stereo = stereo + wet
    stereo = stereo * gate
    return (stereo / max(float(np.abs(stereo).max()), 1e-9)).astype(np.float32)


def drum_key(hit: DrumHit, drums: dict) -> int:
    """The GM percussion key of `hit` in the song's kit (the ride for the hats where it keeps time)."""
    piece = RIDE_PIECES.get(hit.piece, hit.piece) if hit.section in drums["ride_sections"] else hit.piece
    return drums["keys"][piece]


def strum(notes: list[Note], grid: Grid, string_seconds: float) -> list[Note]:
    """Chords strummed `string_seconds` a string apart: downstrokes (lowest string first) on the beats' eighths,
    softer upstrokes (highest string first) on the off-beat eighths."""
    top = {}
    for note in notes:
        top[note.start] = max(top.get(note.start, 0), note.voice)
    strummed = []
    for note in notes:
        upstroke = round(note.start / grid.step_seconds) % 4 == 2
        string = top[note.start] - note.voice if upstroke else note.voice
        velocity = note.velocity * (UPSTROKE_VELOCITY if upstroke else 1.0)
        strummed.append(dataclasses.replace(note, start=note.start + string * string_seconds, velocity=velocity))
    return strummed


def other_notes(plan: SongPlan, rng: np.random.Generator) -> list[Note]:
    """The chords in the `other` instrument's voicing, rhythm and style (block, strummed or arpeggiated)."""
    other = plan.instruments["other"]
    if other["voicing"] == "barre":
        voicings = guitar_voicings(plan)
    else:
        voicings = chord_voicings(plan, CHORD_SIZES[other["voicing"]])
    notes = chord_notes(plan, rng, other["rhythm"], voicings)
    return strum(notes, plan.grid, other["strum_ms"] / 1000) if other["style"] == "strum" else notes


def lead_notes(plan: SongPlan, rng: np.random.Generator) -> list[Note]:
    """The vocal melody, moved into the range of the instrument standing in for the voice."""
    grid, transpose = plan.grid, plan.instruments["vocals"]["transpose"]
    notes = []
    for sung in vocal_melody(plan, rng):
        start = grid.time(0, sung.step)
        end = grid.time(0, sung.step + sung.length)
        notes.append(Note(start, end - start, sung.pitch + transpose, sung.velocity))
    return notes


def render_bass(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """The bass line on a GM bass: float32 [2, samples]."""
    notes = perform(bass_notes(plan, rng), rng, plan.instruments["bass"])
    return render_stem(plan, "bass", notes, rng, num_samples, sample_rate)


def render_drums(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """The groove, fills and crashes on a GM drum kit: float32 [2, samples]."""
    drums = plan.instruments["drums"]
    hits = [Note(hit.start, 0.0, drum_key(hit, drums), hit.velocity) for hit in drum_hits(plan, rng)]
    return render_stem(plan, "drums", perform(hits, rng, drums), rng, num_samples, sample_rate)


def render_other(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """The chords on a GM keyboard, organ, guitar, string ensemble or pad, with the song's reverb: float32 [2,
    samples]."""
    notes = perform(other_notes(plan, rng), rng, plan.instruments["other"])
    return render_stem(plan, "other", notes, rng, num_samples, sample_rate, room=True)


def render_vocals(plan: SongPlan, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """The vocal melody on a GM voice or lead instrument, with the song's reverb: float32 [2, samples]."""
    notes = perform(lead_notes(plan, rng), rng, plan.instruments["vocals"])
    return render_stem(plan, "vocals", notes, rng, num_samples, sample_rate, room=True)


SOUNDFONT_RENDERERS = {"bass": render_bass, "drums": render_drums, "other": render_other, "vocals": render_vocals}
