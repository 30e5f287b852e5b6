"""Benchmark of the flawed-mix data set on a synthetic corpus (dataset_builder.synth).

Prints examples/s for building the expanded data set (cold: stems decoded into the cache; warm: cache reused),
and mixes/s for rendering 10 s flawed mixes from the stem cache versus decoding and resampling the same 10 s
from the WAV files, without and with training augmentation, with the ratio of the two, all measured in one run.
The augmentation's noise comes from a pre-drawn bank (`augment_mix`); the same augmentation drawing its noise
afresh for every mix (the earlier implementation) is timed beside it. `--mono-24k` synthesises the corpus as the demo
does (mono 16-bit at 24 kHz, read in place: no cache entries) instead of MUSDB18HQ's 44.1 kHz stereo.

    .venv/bin/python bench/dataset.py [--songs 6] [--seconds 60] [--mixes 200] [--mono-24k]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf

from dataset_builder import StemCache, augment_mix, build_dataset
from dataset_builder.levels import db_to_gain
from dataset_builder.stem_cache import to_mono
from dataset_builder.synth import synthesize_corpus
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS


def decode_flawed_mix(example: dict, track_dir: Path, sampling_rate: int = 24000) -> np.ndarray:
    """The baseline: read the chunk of every stem from its WAV, downmix, resample (soxr HQ) and sum with the gain."""
    mix = np.zeros(round((example["end_sec"] - example["start_sec"]) * sampling_rate), dtype=np.float32)
    for stem in STEMS:
        with sf.SoundFile(str(track_dir / f"{stem}.wav")) as file:
            file.seek(round(example["start_sec"] * file.samplerate))
            audio = file.read(
                round((example["end_sec"] - example["start_sec"]) * file.samplerate), dtype="float32", always_2d=True
            )
            clip = to_mono(audio, file.samplerate, sampling_rate)
        gain = db_to_gain(example["gain_db"]) if stem == example["target_stem"] else 1.0
        mix[: len(clip)] += np.float32(gain) * clip[: len(mix)]
    return mix


def augment_fresh_draws(mix: np.ndarray, seed) -> np.ndarray:
    """`augment_mix` as it was before the noise bank: the same draws, with the noise drawn afresh per sample."""
    rng = np.random.default_rng(seed)
    gain_db, snr_db, dc_offset = rng.uniform(-3, 3), rng.uniform(40, 60), rng.uniform(-0.005, 0.005)
    gain = np.float32(db_to_gain(gain_db))
    noise_rms = gain * np.sqrt(np.mean(np.square(mix))) / db_to_gain(snr_db)
    out = mix * gain + rng.standard_normal(mix.shape, dtype=np.float32) * np.float32(noise_rms) + np.float32(dc_offset)
    return np.clip(out, -1.0, 1.0)


def per_second(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--mixes", type=int, default=200, help="mixes rendered per measurement")
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument("--mono-24k", action="store_true", help="the demo's corpus form (read in place, no cache)")
    args = parser.parse_args()
    rate, channels = (24000, 1) if args.mono_24k else (44100, 2)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = synthesize_corpus(
            tmp / "corpus", args.songs, args.seconds, seed=0, sample_rate=rate, channels=channels, progress=False
        )
        timings = {}
        for run in ("cold", "warm"):
            start = time.perf_counter()
            stats = build_dataset(
                corpus, tmp / "out", seed=0, num_proc=args.num_proc, cache_dir=tmp / "cache", overwrite=True
            )
            timings[run] = time.perf_counter() - start
        rows = sum(s["rows"] for s in stats["splits"].values())
        chunks = sum(s["gating"]["chunks"] for s in stats["splits"].values())

        dataset = datasets.load_dataset(str(tmp / "out"), split="train", cache_dir=str(tmp / "hf"))
        picks = np.random.default_rng(0).choice(dataset.num_rows, size=min(args.mixes, dataset.num_rows), replace=False)
        examples = [dataset[int(i)] for i in picks]
        cache = StemCache(corpus, cache_dir=tmp / "cache")
        track_dirs = {name: track.folder for name, track in cache.tracks.items()}
        for example in examples:  # open every memory map; both paths agree away from the resampler's edge effects
            rendered, decoded = cache.render(example), decode_flawed_mix(example, track_dirs[example["track"]])
            np.testing.assert_allclose(rendered[100:-100], decoded[100:-100], atol=2e-3)
        augment_mix(rendered, 0)  # numba compiles (or loads) the augmentation's kernel on its first call

        def decode(example):
            return decode_flawed_mix(example, track_dirs[example["track"]])

        results = {
            "render": per_second(cache.render, examples),
            "decode": per_second(decode, examples),
            "render + augment": per_second(lambda e: augment_mix(cache.render(e), 0), examples),
            "decode + augment": per_second(lambda e: augment_mix(decode(e), 0), examples),
            "render + augment (fresh draws)": per_second(lambda e: augment_fresh_draws(cache.render(e), 0), examples),
        }
        cache_files = len(list((tmp / "cache").rglob("*.npy")))

    form = "24 kHz mono, read in place" if args.mono_24k else "44.1 kHz stereo, decoded into the cache"
    print(f"corpus: {args.songs} songs x {args.seconds:g} s ({form}: {cache_files} cache entries), {chunks} chunks, "
          f"{rows} expanded rows")
    for run, seconds in timings.items():
        print(f"build-dataset ({run} stem cache): {seconds:6.2f} s  {rows / seconds:9.0f} examples/s")
    for name, speed in results.items():
        print(f"{name:>30}: {speed:9.1f} mixes/s")
    print(
        f"render vs decode: {results['render'] / results['decode']:.0f}x without augmentation, "
        f"{results['render + augment'] / results['decode + augment']:.0f}x with; the noise bank makes rendering with "
        f"augmentation {results['render + augment'] / results['render + augment (fresh draws)']:.1f}x faster"
    )


if __name__ == "__main__":
    main()
