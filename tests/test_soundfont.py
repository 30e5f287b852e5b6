"""The sampled-instrument engine: stems sound where their sections play, the drawn GM presets are the ones played,
output is deterministic and finite, and a missing SoundFont or tinysoundfont says how to get it."""

import dataclasses
import hashlib
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dataset_builder.synth import plan as synth_plan
from dataset_builder.synth import soundfont
from dataset_builder.synth.chords import barre_chord
from dataset_builder.synth.dsp import Note
from dataset_builder.synth.plan import Section, plan_song
from dataset_builder.synth.soundfont import SOUNDFONT_RENDERERS
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

TESTS = pathlib.Path(__file__).parent
RATE = 22050
TEMPO = 150.0  # 1.6 s bars: three sections of four bars make a 19.2 s song
ARRANGEMENT = (  # each stem plays somewhere and is silent somewhere
    ("intro", ("drums", "other")),
    ("verse", ("bass", "drums", "vocals")),
    ("breakdown", ("bass", "other", "vocals")),
)


@pytest.fixture(scope="module", autouse=True)
def soundfont_path():
    """The set-up installs the SoundFont; without it every test fails with the message saying how to get it."""
    return soundfont.find_soundfont()


def arranged_song(seed: int) -> synth_plan.SongPlan:
    """A drawn song, set to `TEMPO` and one-chord bars, in `ARRANGEMENT`'s sections of four bars."""
    plan = plan_song(np.random.default_rng(seed), "Test - Song", "train", 20.0)
    sections = [Section(kind, 4 * i, 4, stems) for i, (kind, stems) in enumerate(ARRANGEMENT)]
    return dataclasses.replace(plan, tempo=TEMPO, bars_per_chord=1, swing=0.0, sections=sections)


def num_samples(plan) -> int:
    return round(plan.sections[-1].end_bar * plan.grid.bar_seconds * RATE)


def render(plan, stem: str, seed: int = 0) -> np.ndarray:
    return SOUNDFONT_RENDERERS[stem](plan, np.random.default_rng(seed), num_samples(plan), RATE)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def silent_windows(plan, stem: str) -> list[tuple[int, int]]:
    """Sample ranges where `stem` must be silent: its stretches without it, after the tail that may ring into them
    and before the notes that may start a little early in the next section."""
    bar = plan.grid.bar_seconds * RATE
    active = plan.bar_activity(stem, plan.sections[-1].end_bar)
    windows = []
    for start in range(len(active)):
        if not active[start] and (start == 0 or active[start - 1]):
            end = next((b for b in range(start, len(active)) if active[b]), len(active))
            ring = (soundfont.TAIL_SECONDS + soundfont.FADE_SECONDS) * RATE if start else 0
            windows.append((round(start * bar + ring), round(end * bar - soundfont.FADE_SECONDS * RATE)))
    return windows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_stem_sounds_where_it_plays_and_is_silent_elsewhere(seed):
    plan = arranged_song(seed)
    bar = plan.grid.bar_seconds * RATE
    for stem in STEMS:
        audio = render(plan, stem, seed)
        assert audio.shape == (2, num_samples(plan)) and audio.dtype == np.float32
        assert np.isfinite(audio).all() and 0.5 < np.abs(audio).max() <= 1.0  # peak-normalised, never clipped
        active = plan.bar_activity(stem, plan.sections[-1].end_bar)
        for index in np.flatnonzero(active):  # every bar where the stem plays has sound (within 30 dB of the stem)
            assert rms(audio[:, round(index * bar) : round((index + 1) * bar)]) > 0.03 * rms(audio), (stem, index)
        for start, end in silent_windows(plan, stem):
            assert np.abs(audio[:, start:end]).max() < 1e-4, (stem, start / RATE, end / RATE)


def test_drawn_instruments_are_from_the_documented_tables():
    plans = [plan_song(np.random.default_rng(seed), "T - S", "train", 30.0) for seed in range(200)]
    families = {"voice": 0, "lead": 0}
    for plan in plans:
        drums, bass, other, vocals = (plan.instruments[stem] for stem in ("drums", "bass", "other", "vocals"))
        assert drums["bank"] == synth_plan.GM_DRUM_BANK and drums["program"] in synth_plan.GM_DRUM_KITS
        assert all(drums["keys"][piece] in keys for piece, keys in synth_plan.GM_DRUM_KEYS.items())
        assert bass["bank"] == 0 and bass["name"] == synth_plan.GM_BASSES[bass["program"]]
        programs, rhythms = synth_plan.OTHER_FAMILIES[other["family"]]
        assert other["bank"] == 0 and other["name"] == programs[other["program"]] and other["rhythm"] in rhythms
        assert (other["style"] == "strum") == other["rhythm"].startswith("strum")
        assert (other["voicing"] == "barre") == (other["family"] == "guitar")
        table = synth_plan.GM_VOICES if vocals["family"] == "voice" else synth_plan.GM_LEADS
        assert vocals["bank"] == 0 and vocals["name"] == table[vocals["program"]] and vocals["transpose"] % 12 == 0
        low, high = synth_plan.MELODY_RANGES[vocals["program"]]
        center = plan.voice["center"] + vocals["transpose"]
        assert low <= center - 9 and center + 12 <= high  # the melody, choruses 3 semitones up included, fits
        for instrument in (drums, bass, other, vocals):
            assert 0.55 <= instrument["velocity_scale"] <= 1.0 and 2.0 <= instrument["timing_ms"] <= 10.0
        for instrument in (bass, other, vocals):
            assert instrument["gate"] <= 1.0 and instrument["articulation"] in synth_plan.ARTICULATIONS
        families[vocals["family"]] += 1
    assert 0.35 < families["voice"] / len(plans) < 0.65  # GM voices about half the time, lead instruments otherwise
    assert {plan.instruments["other"]["family"] for plan in plans} == set(synth_plan.OTHER_FAMILIES)


def test_the_synth_plays_the_drawn_presets(monkeypatch):
    selected = []
    synth_class = type(soundfont.load_soundfont(soundfont.find_soundfont())[0])
    program_select = synth_class.program_select

    def spy(self, channel, sfid, bank, preset, is_drums=False):
        selected.append((channel, bank, preset, is_drums))
        return program_select(self, channel, sfid, bank, preset, is_drums)

    monkeypatch.setattr(synth_class, "program_select", spy)
    plan = arranged_song(3)
    for stem in STEMS:
        render(plan, stem)
        instrument = plan.instruments[stem]
        drums = stem == "drums"
        assert selected.pop() == (9 if drums else 0, instrument["bank"], instrument["program"], drums)
    names = soundfont.preset_names(plan)
    assert set(names) == set(STEMS) and all(names.values())  # FluidR3_GM has every drawn preset


def test_same_plan_and_seed_give_identical_audio_whatever_was_rendered_before():
    plan, other = arranged_song(4), arranged_song(5)
    first = {stem: render(plan, stem, 7) for stem in STEMS}
    for stem in STEMS:
        render(other, stem, 8)
    for stem in reversed(STEMS):
        np.testing.assert_array_equal(render(plan, stem, 7), first[stem])
    assert not np.array_equal(render(plan, "bass", 8), first["bass"])  # the humanisation follows the generator


@pytest.mark.slow
def test_a_fresh_process_renders_the_same_audio():
    script = (
        "import hashlib, test_soundfont as t;"
        "print(hashlib.sha256(t.render(t.arranged_song(6), 'other', 9)).hexdigest())"
    )
    here = hashlib.sha256(render(arranged_song(6), "other", 9)).hexdigest()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=TESTS)
    assert result.stdout.strip() == here


def test_strums_run_across_the_strings_and_guitars_play_barre_chords():
    assert barre_chord(40, 4, 7) == [40, 47, 52, 56, 59, 64]  # E major, E shape
    assert barre_chord(45, 3, 7) == [45, 52, 57, 60, 64]  # A minor, A shape
    grid = synth_plan.Grid(120.0)
    chord = [Note(start, 0.25, pitch, 1.0, voice) for start in (0.0, 0.25) for voice, pitch in enumerate((40, 47, 52))]
    strummed = soundfont.strum(chord, grid, 0.01)  # a downstroke on the beat, an upstroke on the eighth after it
    assert [n.start for n in strummed] == pytest.approx([0.0, 0.01, 0.02, 0.27, 0.26, 0.25])
    assert [n.velocity for n in strummed] == pytest.approx([1.0] * 3 + [soundfont.UPSTROKE_VELOCITY] * 3)


def test_a_missing_soundfont_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv(soundfont.SOUNDFONT_ENV, str(tmp_path / "missing.sf2"))
    with pytest.raises(soundfont.SoundFontNotFoundError, match="apt-get install fluid-soundfont-gm") as error:
        render(arranged_song(0), "bass")
    assert isinstance(error.value, FileNotFoundError) and "\n" not in str(error.value)
    assert "missing.sf2" in str(error.value) and soundfont.SOUNDFONT_ENV in str(error.value)
    monkeypatch.delenv(soundfont.SOUNDFONT_ENV)
    monkeypatch.setattr(soundfont, "DEFAULT_SOUNDFONTS", (tmp_path / "FluidR3_GM.sf2",))
    with pytest.raises(soundfont.SoundFontNotFoundError, match=r"^No General MIDI SoundFont at .*fluid-soundfont-gm"):
        soundfont.find_soundfont()


def test_the_soundfont_is_the_given_path_else_the_environments(monkeypatch, tmp_path):
    given, configured = tmp_path / "given.sf2", tmp_path / "configured.sf2"
    given.touch()
    configured.touch()
    monkeypatch.setenv(soundfont.SOUNDFONT_ENV, str(configured))
    assert soundfont.find_soundfont(given) == given and soundfont.find_soundfont() == configured


def test_a_missing_tinysoundfont_says_how_to_install_it(monkeypatch, soundfont_path):
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps tinysoundfont==0\.3\.7"):
        soundfont.load_soundfont.__wrapped__(soundfont_path)


def test_synth_stems_without_tinysoundfont_is_one_line_and_exit_code_2(monkeypatch, tmp_path, capsys):
    from mixingbuddy.cli import main

    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    monkeypatch.setattr(soundfont, "load_soundfont", soundfont.load_soundfont.__wrapped__)  # no font cached already
    argv = ["synth-stems", "--out", str(tmp_path / "corpus"), "--songs", "1", "--seconds", "10", "--engine", "soundfont"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("mixingbuddy synth-stems: ") and "pip install --no-deps tinysoundfont==0.3.7" in err
    assert not list(tmp_path.iterdir())  # nothing half-written
