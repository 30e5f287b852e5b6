"""bench/midi_songs.py's split of a human-written MIDI song into the four stems (which channel becomes which stem,
which 40 s of the song is taken) and its rendering of one stem."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
midi_songs = pytest.importorskip("midi_songs")
midi = pytest.importorskip("tinysoundfont.midi")


def note(channel: int, key: int, start: float, length: float = 0.4, velocity: int = 100) -> list:
    """A note-on and its note-off (a note-on of velocity 0, as many files write it)."""
    return [midi.Event(midi.NoteOn(key, velocity), t=start, channel=channel),
            midi.Event(midi.NoteOn(key, 0), t=start + length, channel=channel)]


def song(seconds: float = 60.0, drums: bool = True, bass_program: int = 33, lead_from: float = 0.0) -> list:
    """Drums on channel 9, a bass line on channel 1, a busy chord part on channel 2 under a melody on channel 3 (from
    `lead_from` on) and a sparse high bell on channel 4."""
    events = [midi.Event(midi.ProgramChange(program), channel=channel)
              for channel, program in ((1, bass_program), (2, 0), (3, 73), (4, 14))]
    for beat in range(int(seconds * 2)):
        t = beat / 2
        if drums:
            events += note(9, 36 if beat % 2 == 0 else 38, t, 0.1)
        events += note(1, 36 + beat % 5, t)
        events += [e for key in (60, 64, 67) for e in note(2, key, t)]  # chords: more notes than the melody
        if t >= lead_from:
            events += note(3, 72 + beat % 7, t)  # over the chords, the highest line while it plays
        if beat % 16 == 0:
            events += note(4, 84, t, 0.2)  # highest of all, but rarely sounding
    return sorted(events, key=lambda e: e.t)


def test_each_channel_goes_to_its_stem():
    parts = midi_songs.parts(song())
    assert parts[2].keys[:3] == [60, 64, 67] and parts[1].program == 33
    assert midi_songs.assign_stems(parts) == {"bass": [1], "drums": [9], "other": [2, 4], "vocals": [3]}


def test_the_lead_is_the_part_on_top_most_often_not_the_busiest_or_the_highest():
    parts = midi_songs.parts(song())
    assert len(parts[2].keys) > len(parts[3].keys) and parts[4].keys[0] > max(parts[3].keys)
    assert midi_songs.skyline_part([parts[c] for c in (2, 3, 4)]) == 3


def test_without_a_gm_bass_the_lowest_part_plays_bass_and_a_song_without_drums_is_left_out():
    assert midi_songs.assign_stems(midi_songs.parts(song(bass_program=0)))["bass"] == [1]  # mean key 38 < C3
    assert midi_songs.assign_stems(midi_songs.parts(song(drums=False))) is None


def test_the_excerpt_starts_where_every_stem_plays():
    parts = midi_songs.parts(song(seconds=90.0, lead_from=30.0))
    stems = midi_songs.assign_stems(parts)
    assert midi_songs.excerpt_start(parts, stems, 40.0) == 30.0
    assert midi_songs.excerpt_start(midi_songs.parts(song(seconds=90.0)), stems, 40.0) == 0.0  # the earliest of equals


def test_a_stem_renders_only_its_channels_and_drums_play_a_kit_without_a_program_change():
    """Files that never select a program on the percussion channel still get drums (a reset synthesizer would play
    them on the piano), and another channel's notes stay out of the stem."""
    midi_songs.reset_synth(8000)  # loads the SoundFont; the set-up installs it (a missing one says how to get it)
    events = sorted(note(9, 36, 0.1) + note(0, 36, 0.1), key=lambda e: e.t)
    kit = [midi.Event(midi.ProgramChange(0), channel=9, persistent=False)]
    drums = midi_songs.render(events, [9], 0.0, 1.0, 8000)
    assert drums.shape == (2, 8000) and np.abs(drums).max() > 0.01
    assert np.array_equal(drums, midi_songs.render(kit + events, [9], 0.0, 1.0, 8000))
    piano = midi_songs.render(events, [0], 0.0, 1.0, 8000)  # the same key on a melodic channel: another sound
    assert np.abs(piano).max() > 0.01 and not np.allclose(drums, piano, atol=1e-3)
