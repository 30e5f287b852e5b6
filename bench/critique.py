"""Benchmark of the critique on the tiny model: windows per second at batch 1, 8 and 32, and each as a ratio to batch 1,
measured in one run on the same synthetic song, for each decoding.

    .venv/bin/python bench/critique.py [--seconds 320] [--decodings ranked greedy]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mixingbuddy.critique import critique_audio, open_audio
from mixingbuddy.models.tiny import build_tiny_model_and_processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=320.0, help="length of the song (default: 320, 32 windows)")
    parser.add_argument("--decodings", nargs="+", default=["ranked", "greedy"])
    args = parser.parse_args()
    model, processor = build_tiny_model_and_processor(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "song.wav"
        audio = 0.1 * np.random.default_rng(0).standard_normal((int(args.seconds * 44100), 2))
        sf.write(path, audio.astype(np.float32), 44100)
        song = open_audio(path)
        print(f"tiny model, {args.seconds:g} s song, {torch.get_num_threads()} threads")
        for decoding in args.decodings:
            rates = {}
            for batch_size in (1, 8, 32):
                started = time.perf_counter()
                report = critique_audio(song, "vocals", model, processor, decoding=decoding, batch_size=batch_size)
                rates[batch_size] = len(report["windows"]) / (time.perf_counter() - started)
            print(f"{decoding:>11}: " + ", ".join(
                f"batch {b}: {r:.2f} windows/s ({r / rates[1]:.2f}x)" for b, r in rates.items()))


if __name__ == "__main__":
    main()
