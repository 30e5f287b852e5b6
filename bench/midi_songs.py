"""Human-written songs played by sampled instruments: a held-out set that no song plan of this project made.

The outside check plays human-written songs through General MIDI instruments with a script of its own. This bench
makes the nearest set this machine can: Standard MIDI files written by people (by default the 31 songs of Debian's
`openttd-openmsx`, composed for OpenTTD, GPL-2.0: `apt-get install openttd-openmsx`; any folder of `.mid` files
with `--midi-dir`), never seen in training. Each song's channels are split into the four stems (`assign_stems`):
drums the percussion channel, bass the channels on a GM bass program (else the lowest melodic part), vocals the lead
(the part that most often sounds the highest note: the skyline), other the rest. A 40 s excerpt (`excerpt_start`:
where every stem plays most) of each stem is rendered by TinySoundFont through the corpus's SoundFont at 44.1 kHz in
stereo, with every channel's program and controller changes from the file's start, so volumes, expression and pans
are the arranger's. The stems
keep the balance the arranger wrote ("as written"; one gain for the whole song puts the lead near -20 LUFS);
`bench/held_out.py --midi-dir` scores models on that set and on it levelled by each convention.

Writes `OUT/corpus/test/SONG/{mixture,bass,drums,other,vocals}.wav`, `OUT/corpus/midi_songs.json` (each song's file,
excerpt, stems' channels and programs, and loudness per stem) and `OUT/dataset` (the builder's `expanded` rows), and
prints each stem's loudness relative to the vocals as written: the arrangers' own balance.

    .venv/bin/python bench/midi_songs.py [--midi-dir /usr/share/games/openttd/baseset/openmsx] [--out bench_out/midi]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from dataset_builder import build_dataset
from dataset_builder.levels import db_to_gain, gain_to_db, loudness
from dataset_builder.synth.soundfont import reset_synth
from mixingbuddy.files import write_file_atomic
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

MIDI_DIR = Path("/usr/share/games/openttd/baseset/openmsx")  # apt-get install openttd-openmsx
SAMPLE_RATE = 44100
EXCERPT_SECONDS = 40.0
EXCERPT_STEP_SECONDS = 5.0  # candidate excerpt starts
PERCUSSION_CHANNEL = 9  # General MIDI's channel 10
GM_BASS_PROGRAMS = range(32, 40)
LOWEST_BASS_KEY = 48  # a part whose mean key is under C3 can stand in for a missing GM bass
VOCALS_LUFS = -20.0  # the whole song's gain puts the lead here (as the training corpus does), unless it would clip
SKYLINE_STEP_SECONDS = 0.1  # the time grid on which the lead is found


@dataclasses.dataclass
class Part:
    """One MIDI channel's notes: its first program, the start, end and key of each note."""

    channel: int
    program: int
    starts: list[float]
    ends: list[float]
    keys: list[int]

    @property
    def mean_key(self) -> float:
        return statistics.mean(self.keys)

    def top_keys(self, step: float, steps: int) -> np.ndarray:
        """The highest key the part sounds at each `step` seconds [steps] (-1 where it is silent)."""
        top = np.full(steps, -1)
        for start, end, key in zip(self.starts, self.ends, self.keys):
            span = slice(int(start / step), max(int(end / step), int(start / step) + 1))
            top[span] = np.maximum(top[span], key)
        return top


def load_events(path: Path) -> list:
    """The file's events (tinysoundfont.midi.Event, absolute times in seconds) in time order, each played once."""
    from tinysoundfont import midi

    return sorted(midi.load(str(path), persistent=False), key=lambda event: event.t)


def parts(events: list) -> dict[int, Part]:
    """{channel: Part} of every channel that plays a note."""
    from tinysoundfont.midi import NoteOff, NoteOn, ProgramChange

    programs, sounding, found = {}, {}, {}
    for event in events:
        action, channel = event.action, event.channel
        if isinstance(action, ProgramChange):
            programs.setdefault(channel, action.program)
        elif isinstance(action, NoteOn) and action.velocity > 0:
            part = found.setdefault(channel, Part(channel, programs.get(channel, 0), [], [], []))
            sounding[channel, action.key] = len(part.starts)
            part.starts.append(event.t)
            part.ends.append(event.t)  # until its note-off
            part.keys.append(action.key)
        elif isinstance(action, (NoteOn, NoteOff)) and (channel, action.key) in sounding:
            found[channel].ends[sounding.pop((channel, action.key))] = event.t
    return found


def assign_stems(song_parts: dict[int, Part]) -> dict[str, list[int]] | None:
    """{stem: channels}, or None when the song has no drums, no bass or fewer than two other melodic parts."""
    melodic = {c: p for c, p in song_parts.items() if c != PERCUSSION_CHANNEL}
    bass = [c for c, p in melodic.items() if p.program in GM_BASS_PROGRAMS]
    if not bass and melodic:
        lowest = min(melodic.values(), key=lambda p: p.mean_key)
        bass = [lowest.channel] if lowest.mean_key < LOWEST_BASS_KEY else []
    leads = [p for c, p in melodic.items() if c not in bass]
    if PERCUSSION_CHANNEL not in song_parts or not bass or not leads:
        return None
    lead = skyline_part(leads)
    other = [c for c in melodic if c not in (*bass, lead)]
    if not other:
        return None
    return {"bass": bass, "drums": [PERCUSSION_CHANNEL], "other": other, "vocals": [lead]}


def skyline_part(candidates: list[Part]) -> int:
    """The channel of the part that sounds the highest note most often (the skyline: where a melody usually is)."""
    steps = int(max(max(p.ends) for p in candidates) / SKYLINE_STEP_SECONDS) + 1
    tops = np.stack([p.top_keys(SKYLINE_STEP_SECONDS, steps) for p in candidates])  # [parts, steps]
    on_top = (tops == tops.max(axis=0)) & (tops >= 0)  # [parts, steps]
    return candidates[int(on_top.sum(axis=1).argmax())].channel


def excerpt_start(song_parts: dict[int, Part], stems: dict[str, list[int]], seconds: float) -> float:
    """The start (a multiple of EXCERPT_STEP_SECONDS) of the excerpt in which the stem striking fewest notes strikes
    most; the earliest of equals."""
    end = max(max(p.ends) for p in song_parts.values())
    starts = np.arange(0.0, max(end - seconds, 0.0) + 1e-9, EXCERPT_STEP_SECONDS)  # [candidates]
    strikes = {stem: np.concatenate([song_parts[c].starts for c in channels]) for stem, channels in stems.items()}
    counts = np.stack([((notes[:, None] >= starts) & (notes[:, None] < starts + seconds)).sum(0)
                       for notes in strikes.values()])  # [stems, candidates]
    return float(starts[counts.min(0).argmax()])  # argmax: the first of equals


def render(events: list, channels: list[int], start: float, seconds: float, rate: int) -> np.ndarray:
    """The notes of `channels`, with every channel's program and controller changes, from the file's start to
    `start + seconds`, rendered by a reset synthesizer whose percussion channel starts on the standard kit (as a
    General MIDI device's does); the excerpt, float32 [2, samples]."""
    from tinysoundfont import Sequencer
    from tinysoundfont.midi import Event, NoteOff, NoteOn, ProgramChange

    synth, _ = reset_synth(rate)
    sequencer = Sequencer(synth)
    drum_kit = Event(ProgramChange(0), channel=PERCUSSION_CHANNEL, persistent=False)  # a reset channel plays piano
    played = (e for e in events if not isinstance(e.action, (NoteOn, NoteOff)) or e.channel in channels)
    sequencer.add([drum_kit, *played])
    total = round((start + seconds) * rate)
    frames = np.frombuffer(synth.generate(total), dtype=np.float32).reshape(total, 2)  # [samples, 2]
    synth.callback = None  # the sequencer is done: the synthesizer is the corpus engine's again
    return np.ascontiguousarray(frames[round(start * rate):].T)


def write_song(path: Path, folder: Path, rate: int = SAMPLE_RATE, seconds: float = EXCERPT_SECONDS) -> dict | None:
    """`folder/SONG/*.wav` of one MIDI file, all stems scaled alike to put the vocals at VOCALS_LUFS unless a file
    would then peak over -1 dBFS; its record, or None when `assign_stems` finds no four stems in it."""
    events = load_events(path)
    song_parts = parts(events)
    stems = assign_stems(song_parts)
    if stems is None:
        return None
    start = excerpt_start(song_parts, stems, seconds)
    audio = {stem: render(events, channels, start, seconds, rate) for stem, channels in stems.items()}
    levels = {stem: loudness(signal, rate) for stem, signal in audio.items()}  # LUFS before the song's gain
    mixture = sum(audio.values())
    peak = max(float(np.abs(x).max()) for x in (mixture, *audio.values()))
    scale = min(db_to_gain(VOCALS_LUFS - levels["vocals"]), db_to_gain(-1.0) / peak)
    (folder / path.stem).mkdir(parents=True)
    for name, signal in (*audio.items(), ("mixture", mixture)):
        sf.write(folder / path.stem / f"{name}.wav", (signal * scale).T, rate, subtype="PCM_16")
    return {"file": path.name, "start_seconds": start,
            "stems": {stem: [{"channel": c, "program": song_parts[c].program} for c in channels]
                      for stem, channels in stems.items()},
            "loudness_lufs": {stem: round(level + gain_to_db(scale), 2) for stem, level in levels.items()}}


def midi_corpus(midi_dir: Path, out: Path) -> Path:
    """`out`: every `.mid` of `midi_dir` with four stems as a test-only MUSDB18HQ-layout corpus (made once)."""
    from tqdm import tqdm

    if out.exists():
        return out
    files = sorted(midi_dir.glob("*.mid"))
    if not files:
        raise SystemExit(f"{midi_dir} has no .mid file: run `apt-get install openttd-openmsx` or give --midi-dir")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    records = {}
    for path in tqdm(files, desc="render MIDI songs", unit="song"):
        records[path.stem] = write_song(path, staging / "test")
    write_file_atomic(staging / "midi_songs.json", json.dumps(records, indent=1) + "\n")
    staging.rename(out)
    return out


def midi_set(folder: Path, midi_dir: Path = MIDI_DIR) -> Path:
    """`folder/{corpus,dataset}`: `midi_corpus` and its data set (the builder's expanded rows; made once)."""
    midi_corpus(midi_dir, folder / "corpus")
    if not (folder / "dataset").exists():
        build_dataset(folder / "corpus", folder / "dataset", config="expanded", seed=0, cache_dir=folder / "cache")
    return folder


def balance_table(records: dict) -> str:
    """Markdown: each stem's loudness relative to the vocals over the songs as written (mean, sd, range)."""
    kept = [r for r in records.values() if r is not None]
    lines = [f"{len(kept)} of {len(records)} songs have four stems; loudness relative to the vocals (LU):", "",
             "| stem | mean | sd | min | max |", "|---|---|---|---|---|"]
    for stem in ("bass", "drums", "other"):
        values = [r["loudness_lufs"][stem] - r["loudness_lufs"]["vocals"] for r in kept]
        lines.append(f"| {stem} | {statistics.mean(values):+.1f} | {statistics.stdev(values):.1f} | "
                     f"{min(values):+.1f} | {max(values):+.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path, default=MIDI_DIR, help="a folder of Standard MIDI files")
    parser.add_argument("--out", type=Path, default=Path("bench_out/midi"))
    args = parser.parse_args()
    folder = midi_set(args.out, args.midi_dir)
    print(balance_table(json.loads((folder / "corpus" / "midi_songs.json").read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
