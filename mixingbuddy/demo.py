"""`mixingbuddy demo`: the whole pipeline offline, on CPU — synthetic corpus → data set → tiny model trained with
`train_sft.py`'s code → evaluation (ranked and greedy decoding) → a critique of a held-out song with a
flaw put in."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from tqdm.auto import tqdm

from dataset_builder.levels import db_to_gain

from . import config_file
from .files import check_location, read_marker, write_marker
from .hub.vocabulary_mixingbuddy import STEMS
DEMO_FLAW = {"stem": "drums", "gain_db": 9.0, "anchor": "vocals"}  # the critique's song: drums 9 dB too loud
DEMO_LEVEL_SPREAD_DB = 1.5  # songs' own stem levels stray ±1.5 dB from nominal (synth-stems' default is ±3)
# Many songs of one 10 s chunk each rather than fewer long ones: the same minutes of audio, but the model cannot lean
# on having heard a song's own balance (measured: the classifier alone on 600 x 10 s reaches 72 % on held-out songs,
# on 150 x 40 s 61 %; the demo's recipe 92.1 / 87.6 % on 10 s songs and 84.3 / 85.2 % on chunks of held-out 40 s
# songs: bench/song_length.py)
DEMO_SONGS, DEMO_SECONDS, DEMO_SAMPLE_RATE = 600, 10.0, 24000
# The songs' sound: General MIDI instruments from a SoundFont, every stem through a drawn mixing chain (trained on
# these, the recipe does best on sampled-instrument songs and transfers better to oscillator songs than the other way
# round: bench/generalisation.py, README "What the demo reaches")
DEMO_ENGINE = "soundfont"
DEMO_TEST_ROWS_PER_SONG = 22  # expanded rows (30 per gated 10-s chunk) per test song, measured on the demo corpus
DEMO_CRITIQUE_SECONDS = 40.0  # the critique's song: a held-out song of its own, long enough for 7 windows
DEMO_CRITIQUE_SEED_OFFSET = 1000  # its synth seeds start at the demo's seed + this, so it is none of the corpus's songs
DEMO_COSTS = {  # measured on 2 cores (see README "What the demo reaches"); demo_estimate scales them
    "synth_s_per_song_second": 0.02,
    "train_s_per_step": 0.6,  # five clips (audio_inputs "stems") and their levels, the evaluations during training
    "evaluate_s_per_row": 0.085,  # two decodings
    "fixed_s": 30.0,
    "fixed_bytes": 60_000_000,
}
MIN_CRITIQUE_WINDOWS = 5  # the critique must name the raised stem and say to lower it in 5 of its windows
DEMO_CRITIQUE_HOP = 5.0  # seconds: a 40 s song gives 7 overlapping 10 s windows


class DemoCheckError(RuntimeError):
    """A demo result that no user would accept; the message says what went wrong."""


class ModelCollapsedError(DemoCheckError):
    """The trained model gives the same answer for every clip: it learned the templates, not the audio."""


class CritiqueMissedError(DemoCheckError):
    """The critique of the demo song does not find the stem that was raised."""


def check_not_collapsed(predictions_path: Path, min_distinct: int = 3):
    """Fail loudly when the evaluation's answers barely vary across clips."""
    answers = Counter()
    with open(predictions_path) as f:
        for line in f:
            parsed = json.loads(line)["parsed"]
            answers[(parsed["stem"], parsed["direction"])] += 1
    if len(answers) < min_distinct:
        raise ModelCollapsedError(
            f"The demo model collapsed: {sum(answers.values())} clips got only {len(answers)} distinct answers "
            f"({dict(answers)}); it ignores the audio."
        )


def check_critique(report: dict, stem: str, min_windows: int = MIN_CRITIQUE_WINDOWS):
    """Fail loudly unless at least `min_windows` windows of the critique ask to lower `stem`."""
    hits = sum(w["stem"] == stem and w["direction"] == "decrease" for w in report["windows"])
    if hits < min(min_windows, len(report["windows"])):
        said = Counter(f"{w['direction']} {w['stem'] or ''}".strip() for w in report["windows"])
        raise CritiqueMissedError(
            f"The critique missed the flaw: the {stem} were raised by {DEMO_FLAW['gain_db']:g} dB but only {hits} of "
            f"{len(report['windows'])} windows say to lower them ({dict(said)})."
        )


def flawed_song(track_dir: Path, out_dir: Path, stem: str, gain_db: float) -> Path:
    """Write a song with one stem's gain changed by `gain_db` over the whole song into `out_dir`: `mixture.wav` and
    each stem (`bass.wav`, …: what `critique --stems-dir` reads), all scaled by one factor so that the mix does not
    clip and the stems still sum to it. Returns the mixture's path."""
    stems = {name: sf.read(track_dir / f"{name}.wav", dtype="float32") for name in STEMS}
    rate = stems["bass"][1]
    flawed = {name: audio * (db_to_gain(gain_db) if name == stem else 1.0) for name, (audio, _) in stems.items()}
    flawed["mixture"] = sum(flawed.values())
    scale = 1.0 / max(1.0, float(np.abs(flawed["mixture"]).max()) / 0.99)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, audio in flawed.items():
        sf.write(out_dir / f"{name}.wav", audio * scale, rate, subtype="FLOAT")
    return out_dir / "mixture.wav"


def critique_song(folder: Path, seed: int) -> Path:
    """The critique's song (its track folder): the first 40 s synthetic song, from synth seeds `seed` + 1000, + 1001, …,
    in which the flawed stem plays in every section (the synthetic songs' intros often leave it out, and in an intro
    without drums no model can hear that the drums are too loud). Written once into `folder`, with its seed in
    `folder/corpus.json`."""
    from dataset_builder.synth import synthesize_corpus

    if not folder.exists():
        candidate = folder.with_name(folder.name + ".candidate")
        for song_seed in range(seed + DEMO_CRITIQUE_SEED_OFFSET, seed + DEMO_CRITIQUE_SEED_OFFSET + 100):
            shutil.rmtree(candidate, ignore_errors=True)
            synthesize_corpus(candidate, songs=1, seconds=DEMO_CRITIQUE_SECONDS, seed=song_seed, progress=False,
                              level_spread_db=DEMO_LEVEL_SPREAD_DB, sample_rate=DEMO_SAMPLE_RATE, channels=1,
                              engine=DEMO_ENGINE)
            sections = json.loads((candidate / "corpus.json").read_text())["tracks"][0]["sections"]
            if all(DEMO_FLAW["stem"] in section["stems"] for section in sections):
                candidate.rename(folder)
                break
        else:
            shutil.rmtree(candidate, ignore_errors=True)
            raise RuntimeError(f"No synthetic song from seed {seed + DEMO_CRITIQUE_SEED_OFFSET} on has the "
                               f"{DEMO_FLAW['stem']} in every section.")
    return next((folder / "train").iterdir())


def train_tiny_model(dataset_dir: Path, stems_dir: Path, cache_dir: Path, model_dir: Path, seed: int, max_steps: int | None):
    """Train with `configs/tiny.yaml`, exactly as `accelerate launch train_sft.py --config configs/tiny.yaml` would."""
    from .training.run import run

    argv = ["--config", str(config_file("tiny.yaml")), "--dataset_name", str(dataset_dir), "--stems_dir", str(stems_dir),
            "--stem_cache_dir", str(cache_dir), "--output_dir", str(model_dir), "--seed", str(seed)]
    if max_steps is not None:
        argv += ["--max_steps", str(max_steps)]
    run(argv)


def prepare_demo_folder(out: Path, settings: dict, overwrite: bool = False) -> Path:
    """`out`, ready for a demo with `settings`: new, or an earlier demo's folder with the same settings (its corpus and
    data set are reused), or — with `overwrite` — an earlier demo's folder with other settings, emptied."""
    out = check_location(out)
    marker = read_marker(out) or {}
    if out.exists() and any(out.iterdir()) and marker.get("settings") != settings:
        if marker.get("kind") != "demo":
            raise FileExistsError(f"{out} is neither empty nor a demo's folder; choose another --out.")
        if not overwrite:
            earlier = ", ".join(f"{key} {value}" for key, value in marker["settings"].items())
            raise FileExistsError(f"{out} holds a demo made with {earlier}; use --overwrite or another --out.")
        shutil.rmtree(out)
    write_marker(out, "demo", settings=settings)
    return out


def demo_estimate(songs: int, seconds: float, max_steps: int, test_rows: int) -> tuple[float, int]:
    """(minutes on 2 cores, bytes of disk) a demo of this size takes, from `DEMO_COSTS` measured on this project's
    2-core CI machine kind."""
    c = DEMO_COSTS
    minutes = (songs * seconds * c["synth_s_per_song_second"] + max_steps * c["train_s_per_step"]
               + test_rows * c["evaluate_s_per_row"] + c["fixed_s"]) / 60
    disk = songs * seconds * DEMO_SAMPLE_RATE * 2 * (len(STEMS) + 1) + c["fixed_bytes"]  # mono PCM_16 stems + mixture
    return minutes, int(disk)


def run_demo(
    out: Path, seed: int = 0, songs: int = DEMO_SONGS, seconds: float = DEMO_SECONDS, max_steps: int | None = None,
    eval_limit: int | None = None, checks: bool = True, overwrite: bool = False, threads: int | None = None,
) -> dict:
    """Run every stage, writing to `out`; returns the metrics of each decoding on every test row (ranked in
    `out/metrics.json`; greedy in `out/greedy/`; `mixingbuddy evaluate --decoding constrained` adds the third). An
    earlier demo's corpus and data set are reused when they were made with the same seed, songs and seconds
    (`prepare_demo_folder`), so a second run only retrains and re-evaluates. With `checks`, a model that collapsed or a
    critique that misses the flaw raises a `DemoCheckError` after everything is written. `threads` sets
    `torch.set_num_threads`."""
    import torch

    from dataset_builder import build_dataset
    from dataset_builder.synth import synthesize_corpus
    from dataset_builder.synth.corpus import split_sizes

    from .critique import critique_file, format_critique
    from .evaluation.generation import evaluate_split
    from .evaluation.report import metrics_markdown

    if threads is not None:
        torch.set_num_threads(threads)
    steps = max_steps if max_steps is not None else yaml.safe_load(config_file("tiny.yaml").read_text())["max_steps"]
    minutes, disk = demo_estimate(songs, seconds, steps, eval_limit or DEMO_TEST_ROWS_PER_SONG * split_sizes(songs, None)[1])
    print(f"The demo takes about {minutes:.0f} minutes on 2 cores and {disk / 1e9:.1f} GB of disk in {out}.")
    settings = {"seed": seed, "songs": songs, "seconds": seconds, "level_spread_db": DEMO_LEVEL_SPREAD_DB,
                "sample_rate": DEMO_SAMPLE_RATE, "channels": 1, "engine": DEMO_ENGINE, "mixing_chain": True}
    out = prepare_demo_folder(out, settings, overwrite)
    stems_dir, dataset_dir, cache_dir, model_dir = out / "corpus", out / "dataset", out / "cache", out / "model"
    stages = tqdm(total=5, desc="demo", unit="stage", position=0)

    stages.set_postfix_str("synthetic corpus")
    if not stems_dir.exists():  # mono PCM_16 at the model's rate: the stem cache reads it in place, writing nothing
        synthesize_corpus(stems_dir, songs=songs, seconds=seconds, seed=seed, level_spread_db=DEMO_LEVEL_SPREAD_DB,
                          sample_rate=DEMO_SAMPLE_RATE, channels=1, engine=DEMO_ENGINE)
    stages.update()

    stages.set_postfix_str("data set")
    if not dataset_dir.exists():
        build_dataset(stems_dir, dataset_dir, config="expanded", seed=seed, cache_dir=cache_dir)
    stages.update()

    stages.set_postfix_str("training")
    shutil.rmtree(model_dir, ignore_errors=True)  # an earlier model in this demo's folder: retrained from scratch
    train_tiny_model(dataset_dir, stems_dir, cache_dir, model_dir, seed, max_steps)
    stages.update()

    stages.set_postfix_str("evaluation")
    results = evaluate_split(
        str(model_dir), dataset_dir, out, stems_dir, split="test", batch_size=64, limit=eval_limit,
        decodings=("ranked", "greedy"), cache_dir=cache_dir,
    )
    stages.update()

    stages.set_postfix_str("critique")
    track = critique_song(out / "critique_song", seed)
    song = flawed_song(track, out / "demo_song", DEMO_FLAW["stem"], DEMO_FLAW["gain_db"])
    report = critique_file(song, anchor=DEMO_FLAW["anchor"], model=str(model_dir), hop_seconds=DEMO_CRITIQUE_HOP,
                           **heard_beside_the_mix(model_dir, song.parent, DEMO_FLAW["anchor"]))
    (out / "critique.json").write_text(json.dumps(report, indent=2) + "\n")
    stages.update()
    stages.close()

    print("\nEvaluation on the held-out test songs (ranked decoding):\n")
    print(metrics_markdown(results["ranked"]))
    print(decoding_table(results))
    print(f"\nCritique of {track.name} with the {DEMO_FLAW['stem']} raised by {DEMO_FLAW['gain_db']:g} dB:")
    print(format_critique(report))
    print(f"\nEverything is in {out}: metrics.json, metrics.md, predictions.jsonl, plots, model/, critique.json")
    print(f"Open the web page on this model (from the repository): python app.py --model {model_dir}")
    if checks:
        for predictions in (out / "predictions.jsonl", out / "greedy" / "predictions.jsonl"):
            check_not_collapsed(predictions)
        check_critique(report, DEMO_FLAW["stem"])
    return results


def heard_beside_the_mix(model_dir: Path, song_dir: Path, anchor: str) -> dict:
    """`critique_file`'s stem argument for the clips the model hears (its saved processor's `audio_inputs`, read as
    the critique reads it): none for "mix", the anchor stem's file for "mix+anchor", the song's folder for "stems"."""
    from .critique import saved_processor_config

    audio_inputs = saved_processor_config(str(model_dir)).get("audio_inputs", "mix")
    return {"mix": {}, "mix+anchor": {"anchor_audio": song_dir / f"{anchor}.wav"},
            "stems": {"stems_dir": song_dir}}[audio_inputs]


def decoding_table(results: dict[str, dict]) -> str:
    """One markdown row per decoding: rows, joint and no_error accuracy, unparseable and impossible shares."""
    lines = ["| decoding | rows | joint | no_error | unparseable | impossible |", "|---|---|---|---|---|---|"]
    for decoding, metrics in results.items():
        o, no_error = metrics["overall"], metrics["by_category"].get("no_error", {})
        lines.append(
            f"| {decoding} | {o['n']} | {o['joint_accuracy']:.1%} | {no_error.get('joint_accuracy', float('nan')):.1%} "
            f"| {o['unparseable_share']:.1%} | {o['impossible_share']:.1%} |"
        )
    return "\n".join(lines)
