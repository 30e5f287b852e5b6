"""One song, both engines: the spectrogram of each stem as the procedural and the soundfont engine play the same plan
(same notes, sections and mixing chain), to see what separates the two corpora.

    .venv/bin/python bench/engines_plot.py [--out docs/engines.png] [--seed 0] [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from dataset_builder.synth import synthesize_corpus
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

ENGINES = ("procedural", "soundfont")
SAMPLE_RATE = 24000


def spectrogram_db(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequencies, times, power dB) of a mono stem, 2048-sample Hann frames."""
    freqs, times, power = signal.spectrogram(audio, SAMPLE_RATE, nperseg=2048, noverlap=1536)
    return freqs, times, 10 * np.log10(power + 1e-12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/engines.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ENGINES), len(STEMS), figsize=(14, 5.5), sharex=True, sharey=True)
    with tempfile.TemporaryDirectory() as tmp:
        for row, engine in enumerate(ENGINES):
            corpus = synthesize_corpus(Path(tmp) / engine, songs=1, seconds=args.seconds, seed=args.seed,
                                       sample_rate=SAMPLE_RATE, channels=1, engine=engine, progress=False)
            track = next((corpus / "train").iterdir())
            for col, stem in enumerate(STEMS):
                audio, _ = sf.read(track / f"{stem}.wav", dtype="float32")
                freqs, times, power = spectrogram_db(audio)
                ax = axes[row, col]
                ax.pcolormesh(times, freqs / 1000, power, vmin=-110, vmax=-30, shading="auto", cmap="magma")
                ax.set_yscale("symlog", linthresh=1.0)
                ax.set_ylim(0.03, SAMPLE_RATE / 2000)
                ax.set_title(f"{engine}: {stem}", fontsize=9)
                if col == 0:
                    ax.set_ylabel("kHz")
                if row == len(ENGINES) - 1:
                    ax.set_xlabel("seconds")
    fig.suptitle(f"{track.name} (synth seed {args.seed}): one song plan, two engines, the same mixing chain",
                 fontsize=11)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
