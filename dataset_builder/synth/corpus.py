"""A song (its four stems, levels and JSON record) and the corpus folder of songs."""

from __future__ import annotations

import json
import math
import numbers
import pathlib
from dataclasses import asdict

import numpy as np
import soundfile as sf
from tqdm import tqdm

from dataset_builder.levels import db_to_gain, gain_to_db, loudness
from mixingbuddy.files import atomic_folder
from mixingbuddy.hub.processing_mixingbuddy import downmix
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

from .bass import render_bass
from .chords import render_other
from .drums import render_drums
from .dsp import MIN_SAMPLE_RATE
from .mixing import bus_limiter_gain, plan_mixing, process_stem
from .plan import LEVEL_SPREAD_DB, NOTE_NAMES, Grid, SongPlan, plan_song, track_names
from .vocals import render_vocals

# Integrated loudness (ITU-R BS.1770, LUFS) of each stem in a balanced mix: near-equal loudness with the lead on top
# (README "What balanced means")
NOMINAL_LUFS = {"bass": -21.0, "drums": -21.0, "other": -22.0, "vocals": -20.0}
PEAK_CEILING = db_to_gain(-1.0)  # a song whose mixture or a stem would peak above −1 dBFS is scaled down
FADE_OUT_SECONDS = 0.5

RENDERERS = {"bass": render_bass, "drums": render_drums, "other": render_other, "vocals": render_vocals}


def active_mask(plan: SongPlan, stem: str, num_samples: int, sample_rate: int) -> np.ndarray:
    """Boolean per sample: inside a section where `stem` plays."""
    bar_samples = Grid(plan.tempo).bar_seconds * sample_rate
    bars = plan.bar_activity(stem, plan.sections[-1].end_bar)
    return bars[np.minimum((np.arange(num_samples) / bar_samples).astype(np.int64), len(bars) - 1)]


ENGINES = ("procedural", "soundfont", "both")  # "both": even-numbered songs procedural, odd ones sampled


def stem_renderers(engine: str) -> dict:
    """The stem renderers of `engine` ("procedural" or "soundfont"), each `(plan, rng, num_samples, sample_rate)` ->
    float32 [2, samples]."""
    if engine == "procedural":
        return RENDERERS
    from .soundfont import SOUNDFONT_RENDERERS

    return SOUNDFONT_RENDERERS


def song_engine(engine: str, index: int) -> str:
    """The engine that renders song `index` of a corpus made with `engine`."""
    return ("procedural", "soundfont")[index % 2] if engine == "both" else engine


def render_song(
    plan: SongPlan,
    seed_sequence: np.random.SeedSequence,
    num_samples: int,
    sample_rate: int,
    channels: int = 2,
    engine: str = "procedural",
    mixing: dict | None = None,
):
    """The four stems as int16 arrays [samples, channels] (stereo, or its mono downmix; their sum is the mixture), the
    song gain and the stem levels.

    Each stem is rendered by `engine`, processed by its `mixing` chain (`mixing.plan_mixing`'s settings; None: no
    processing), and scaled so its integrated loudness is its nominal loudness plus the song's `levels_db`; then the
    mix bus's limiter gain multiplies every stem alike (so the stems still sum to the limited mix), and the whole
    song is scaled down if the mixture or a stem would peak above −1 dBFS. The levels are those of the result
    (integrated loudness in LUFS, before PCM rounding; None for a stem that never plays or is silent).
    """
    fade = np.minimum(1.0, (num_samples - np.arange(num_samples)) / (FADE_OUT_SECONDS * sample_rate)).astype(
        np.float32
    )
    renderers, stems, masks = stem_renderers(engine), {}, {}
    for stem, rng in zip(STEMS, map(np.random.default_rng, seed_sequence.spawn(len(STEMS)))):
        audio = renderers[stem](plan, rng, num_samples, sample_rate) * fade  # [2, samples]
        if mixing is not None:
            audio = process_stem(audio, mixing["stems"][stem], sample_rate)
        if channels == 1:
            audio = downmix(audio, channel_axis=0)[None]
        masks[stem] = active_mask(plan, stem, num_samples, sample_rate)
        level = loudness(audio, sample_rate)
        if np.isfinite(level):
            stems[stem] = audio * np.float32(db_to_gain(NOMINAL_LUFS[stem] + plan.levels_db[stem] - level))
        else:  # digital silence: nothing to level
            stems[stem], masks[stem] = audio, np.zeros(num_samples, dtype=bool)
    if mixing is not None:
        bus_gain = bus_limiter_gain(sum(stems.values()), sample_rate, mixing["bus"])  # [samples]
        stems = {stem: audio * bus_gain for stem, audio in stems.items()}
    peak = max(np.abs(sum(stems.values())).max(), *(np.abs(x).max() for x in stems.values()))
    gain = min(1.0, PEAK_CEILING / max(peak, 1e-9))
    pcm = {stem: np.ascontiguousarray(np.rint(x.T * (gain * 32768.0)).astype(np.int16)) for stem, x in stems.items()}
    if mixing is None:
        levels = {stem: NOMINAL_LUFS[stem] + plan.levels_db[stem] + gain_to_db(gain) for stem in STEMS}
    else:  # the limiter lowered the loud passages: measure
        levels = {stem: loudness(stems[stem], sample_rate) + gain_to_db(gain) for stem in STEMS}
    levels = {stem: round(level, 2) if masks[stem].any() else None for stem, level in levels.items()}
    return pcm, round(gain_to_db(gain), 2), levels


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


def describe(plan: SongPlan, seconds: float, song_gain_db: float, loudness_lufs: dict[str, float]) -> dict:
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
    record["loudness_lufs"] = loudness_lufs
    return record


def split_sizes(songs: int, test_songs: int | None) -> tuple[int, int]:
    """(train, test) song counts; by default a fifth (at least one) is test, except that a single song is train."""
    if test_songs is None:
        test_songs = max(1, round(0.2 * songs)) if songs > 1 else 0
    if not isinstance(test_songs, numbers.Integral) or isinstance(test_songs, bool) or not 0 <= test_songs <= songs:
        raise ValueError(f"test_songs must be an integer from 0 to songs ({songs}), got {test_songs!r}")
    return songs - int(test_songs), int(test_songs)


def check_arguments(songs, seconds, seed, sample_rate, level_spread_db=LEVEL_SPREAD_DB, channels=2) -> None:
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
    if channels not in (1, 2) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 (mono) or 2 (stereo), got {channels!r}")


def synthesize_corpus(
    out_dir,
    songs: int,
    seconds: float,
    seed: int,
    *,
    sample_rate: int = 44100,
    test_songs: int | None = None,
    level_spread_db: float = LEVEL_SPREAD_DB,
    channels: int = 2,
    engine: str = "procedural",
    mixing_chain: bool = True,
    progress: bool = True,
) -> pathlib.Path:
    """Write a MUSDB18HQ-layout corpus of `songs` synthetic songs of `seconds` each and return its folder.

    `engine` plays the song plans with oscillators ("procedural"), with General MIDI instruments from a SoundFont
    ("soundfont", see `soundfont.find_soundfont`) or alternately with each ("both"); with `mixing_chain`, every stem
    goes through a panner, reverb, compressor and EQ and the mix through a bus limiter, each drawn from the song's
    seed (`mixing.plan_mixing`), before the levels are set.

    Layout: `out_dir/{train,test}/<Artist - Title>/{bass,drums,other,vocals,mixture}.wav` (PCM_16 at `sample_rate`,
    stereo like MUSDB18HQ or, with `channels=1`, mono — at the model's 24 kHz, the form the stem cache reads in place;
    the mixture is exactly the sum of the stems) and `out_dir/corpus.json` (the seed and every
    song's parameters: tempo, key, progression, sounds, sections, silent spans, levels). The first songs go to
    train and the last `test_songs` to test (default: a fifth, at least one, but a single song goes to train). Each
    stem's level in a song is drawn within ±`level_spread_db` of its nominal level: the "right" balance varies.
    Song `i` depends only on `seed` and `i`, and the same arguments give byte-identical files.

    The corpus is built in a temporary sibling folder and renamed into place, so an error leaves nothing behind.
    Raises `ValueError` for a bad argument (naming it) and `FileExistsError` if `out_dir` exists and is not empty.
    """
    check_arguments(songs, seconds, seed, sample_rate, level_spread_db, channels)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    songs, seconds, seed, sample_rate = int(songs), float(seconds), int(seed), int(sample_rate)
    num_train, _ = split_sizes(songs, test_songs)
    out_dir = pathlib.Path(out_dir)
    num_samples = round(seconds * sample_rate)
    with atomic_folder(out_dir) as staging:
        records = []
        for split in ("train", "test"):
            (staging / split).mkdir()
        for index, track in enumerate(
            tqdm(track_names(seed, songs), desc="synth-stems", unit="song", disable=not progress)
        ):
            split = "train" if index < num_train else "test"
            song_seeds = np.random.SeedSequence([seed, index])
            plan_seed, render_seed, mixing_seed = song_seeds.spawn(3)
            plan = plan_song(np.random.default_rng(plan_seed), track, split, seconds, level_spread_db)
            mixing = plan_mixing(np.random.default_rng(mixing_seed)) if mixing_chain else None
            pcm, song_gain_db, levels = render_song(
                plan, render_seed, num_samples, sample_rate, channels, song_engine(engine, index), mixing
            )
            folder = staging / split / track
            folder.mkdir()
            for stem, audio in pcm.items():
                sf.write(folder / f"{stem}.wav", audio, sample_rate, subtype="PCM_16")
            mixture = np.sum([x.astype(np.int32) for x in pcm.values()], axis=0).astype(np.int16)
            sf.write(folder / "mixture.wav", mixture, sample_rate, subtype="PCM_16")
            record = describe(plan, seconds, song_gain_db, levels)
            records.append({**record, "engine": song_engine(engine, index), "mixing": mixing})
        corpus = {
            "generator": "dataset_builder.synth",
            "engine": engine,
            "mixing_chain": mixing_chain,
            "seed": seed,
            "songs": songs,
            "seconds": seconds,
            "sample_rate": sample_rate,
            "channels": channels,
            "stems": list(STEMS),
            "nominal_lufs": NOMINAL_LUFS,
            "level_spread_db": level_spread_db,
            "tracks": records,
        }
        (staging / "corpus.json").write_text(json.dumps(corpus, indent=2) + "\n")
    return out_dir
