"""Does a model judge the target against the anchor, or against the level it expects in the mix? Score it on the demo
corpus's held-out songs re-balanced by another convention.

Another corpus — human-written songs, a producer's stems — has its own idea of a balanced mix. Each variant moves the
stems of the soundfont corpus's test songs before any flaw (the mixture is re-summed, then the data set is built as
usual, so "balanced" means the moved balance):
- `other+6`: `other` 6 dB louder (a denser accompaniment; `other` is never a target nor an anchor, so the advice of
  every row stays right);
- `spread2`, `spread4`: every stem moved by a per-song gain drawn from a normal law with an sd of 2 or 4 dB (another
  engineer's balance: the anchor and the target move too).

Scores (ranked decoding, the first `--limit` test rows) the models given with `--model NAME=DIR`, and trains the
demo's recipe, hearing `--audio-inputs`, with `other_spread_db` for each `--other-spread` value and seed. Writes
`OUT/balance.json` and `.md`.

    .venv/bin/python bench/balance.py [--out bench_out/balance] [--corpora bench_out/generalisation]
        [--model demo=demo_out/model] [--other-spread 6] [--audio-inputs mix] [--seeds 0] [--limit 660]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from dataset_builder import build_dataset
from dataset_builder.levels import db_to_gain, loudness
from dataset_builder.synth.corpus import NOMINAL_LUFS
from mixingbuddy.evaluation.generation import evaluate_split
from mixingbuddy.files import write_file_atomic
from mixingbuddy.hub.vocabulary_mixingbuddy import AUDIO_INPUTS, STEMS

sys.path.insert(0, str(Path(__file__).parent))
from generalisation import cell, prepare_corpus, train_variant  # noqa: E402

VARIANTS = {"other+6": (0.0, {"other": 6.0}), "spread2": (2.0, {}), "spread4": (4.0, {})}  # (sd of every stem, moves)


def active_rms_db(audio: np.ndarray, rate: int) -> float:
    """RMS in dBFS of `audio` [channels, samples] over its 100 ms frames within 30 dB of the loudest: where it plays."""
    frame = rate // 10
    power = np.square(audio[:, : audio.shape[1] // frame * frame], dtype=np.float64).mean(axis=0)
    power = power.reshape(-1, frame).mean(axis=1)  # [frames]
    return float(10 * np.log10(power[power >= power.max() / 1000].mean() + 1e-20))


# Balance conventions another script may level its stems by: a level measure and each stem's level in a balanced mix
# (the vocals at -20 in both).
CONVENTIONS = {
    # Slakh2100's mixing rule: every source at one integrated loudness (ITU-R BS.1770), in LUFS
    "equal-loudness": (loudness, {"bass": -20.0, "drums": -20.0, "other": -20.0, "vocals": -20.0}),
    # this corpus's convention since 2026-12-07: loudness, the lead 1 LU on top
    "loudness": (loudness, NOMINAL_LUFS),
    # this corpus's convention until 2026-12-07: RMS where a stem plays, vocals and drums -20, bass -21, other -23 dBFS
    "rms": (active_rms_db, {"bass": -21.0, "drums": -20.0, "other": -23.0, "vocals": -20.0}),
}


def convention_moves(stems: dict[str, np.ndarray], rate: int, convention: str) -> dict[str, float]:
    """dB per stem that levels `stems` ([samples, channels] each) by `convention` (a silent stem stays as it is)."""
    measure, levels = CONVENTIONS[convention]
    moves = {stem: levels[stem] - measure(audio.T, rate) for stem, audio in stems.items()}
    return {stem: move if np.isfinite(move) else 0.0 for stem, move in moves.items()}


def rebalance(corpus: Path, out: Path, sd_db: float, moves_db: dict[str, float], seed: int = 0,
              convention: str | None = None) -> Path:
    """`out`: `corpus`'s test songs with each stem moved by N(0, sd_db) dB plus its `moves_db` (dB), after levelling
    by `convention` (one of CONVENTIONS) if given, the mixture re-summed and the song scaled down when a peak would
    pass -1 dBFS (only `test/`: the builder needs no train split)."""
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for song in sorted((corpus / "test").iterdir()):
        rate = sf.info(song / "mixture.wav").samplerate
        stems = {stem: sf.read(song / f"{stem}.wav", dtype="float32", always_2d=True)[0] for stem in STEMS}
        levelled = convention_moves(stems, rate, convention) if convention else dict.fromkeys(STEMS, 0.0)
        moves = {stem: levelled[stem] + rng.normal(0.0, sd_db) + moves_db.get(stem, 0.0) for stem in STEMS}
        stems = {stem: audio * db_to_gain(moves[stem]) for stem, audio in stems.items()}
        mixture = sum(stems.values())
        scale = min(1.0, db_to_gain(-1.0) / max(np.abs(x).max() for x in (mixture, *stems.values())))
        (staging / "test" / song.name).mkdir(parents=True)
        for name, audio in (*stems.items(), ("mixture", mixture)):
            sf.write(staging / "test" / song.name / f"{name}.wav", audio * scale, rate, subtype="PCM_16")
    staging.rename(out)
    return out


def rebalanced(corpus: Path, folder: Path, sd_db: float, moves_db: dict[str, float],
               convention: str | None = None) -> Path:
    """`folder/{corpus,dataset}`: `rebalance`d test songs of `corpus` and their data set (made once)."""
    rebalance(corpus, folder / "corpus", sd_db, moves_db, convention=convention)
    if not (folder / "dataset").exists():
        build_dataset(folder / "corpus", folder / "dataset", config="expanded", seed=0, cache_dir=folder / "cache")
    return folder


def score(model: Path, folder: Path, out: Path, limit: int) -> dict:
    """Ranked decoding of `model` on `folder`'s first `limit` test rows: joint and balanced accuracy, rows."""
    return cell(evaluate_split(str(model), folder / "dataset", out, folder / "corpus", batch_size=64, limit=limit,
                               decodings=("ranked",), cache_dir=folder / "cache")["ranked"])


def markdown(rows: list[dict], tests: list[str]) -> str:
    lines = ["| model | " + " | ".join(f"{t}: joint | balanced" for t in tests) + " |",
             "|---|" + "---|---|" * len(tests)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r[t]['joint']:.1%} | {r[t]['balanced']:.1%}" for t in tests)
                     + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/balance")
    parser.add_argument("--corpora", default="bench_out/generalisation", help="bench/generalisation.py's --out")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                        help="a trained model to score (the last '=' splits the name from the folder)")
    parser.add_argument("--other-spread", type=float, nargs="*", default=[6.0],
                        help="train the demo's recipe with these other_spread_db values (0: other never moved)")
    parser.add_argument("--audio-inputs", choices=AUDIO_INPUTS, default="mix", help="what the trained models hear")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=660)
    args = parser.parse_args()
    out = Path(args.out)
    soundfont = prepare_corpus(Path(args.corpora) / "soundfont", "soundfont")
    folders = {"soundfont": soundfont}
    for name, (sd_db, moves_db) in VARIANTS.items():
        folders[name] = rebalanced(soundfont / "corpus", out / "corpora" / name, sd_db, moves_db)
    models = dict(spec.rsplit("=", 1) for spec in args.model)  # a name may hold "=", a folder rarely does
    for spread in args.other_spread:
        for seed in args.seeds:
            name = f"recipe, {args.audio_inputs}, other_spread_db={spread:g}, seed {seed}"
            models[name] = train_variant(f"{args.audio_inputs}-other{spread:g}-seed{seed}",
                                         {"other_spread_db": spread, "audio_inputs": args.audio_inputs}, soundfont,
                                         out, args.steps, seed)[0]
    results_path = out / "balance.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    for name, model in models.items():
        rows = [r for r in rows if r["model"] != name]
        rows.append({"model": name, **{test: score(Path(model), folder, out / "eval" / name.replace(" ", "_") / test,
                                                   args.limit) for test, folder in folders.items()}})
        write_file_atomic(results_path, json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, list(folders))
    write_file_atomic(out / "balance.md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
