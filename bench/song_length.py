"""Does the demo's recipe judge 10 s chunks of longer songs, where parts rest, come in and change between sections?

The demo's recipe (`configs/tiny.yaml`) is trained on sampled-instrument corpora holding the same minutes of audio cut
into songs of different lengths (`--shapes 600x10 150x40`: 600 songs of 10 s, each one chunk, or 150 songs of 40 s,
four chunks each) and scored with ranked decoding on
- `short`: the first `--limit` test rows of the 10 s soundfont corpus (`bench/generalisation.py`'s);
- `long`: a held-out set made the way an outside one is: 30 songs of 40 s from another synth seed, stereo at
  44.1 kHz, only `test/`, built by `build_dataset` (the first `--long-limit` rows);
- `procedural`: the procedural engine's 10 s test songs (`bench/generalisation.py`'s).
Writes `OUT/song_length.json` and `.md` (per seed and mean ± sd over seeds); resumes from the JSON.

    .venv/bin/python bench/song_length.py [--out bench_out/song_length] [--corpora bench_out/generalisation]
        [--shapes 600x10 150x40] [--steps 800] [--seeds 0 1 2] [--limit 660] [--long-limit 900]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dataset_builder import build_dataset
from dataset_builder.synth import synthesize_corpus
from mixingbuddy.demo import DEMO_LEVEL_SPREAD_DB
from mixingbuddy.files import write_file_atomic

sys.path.insert(0, str(Path(__file__).parent))
from balance import score  # noqa: E402
from generalisation import mean_spread, prepare_corpus, train_variant  # noqa: E402

TESTS = ("short", "long", "procedural")
SHORT_SONGS = (600, 10.0)  # the 10 s corpus, one chunk per song: bench/generalisation.py's --songs 600 --seconds 10
LONG_SET = {"songs": 30, "seconds": 40.0, "seed": 11}  # none of the training corpora's songs (their synth seed is 0)


def held_out_long(folder: Path) -> Path:
    """`folder/{corpus,dataset,cache}`: LONG_SET's songs at 44.1 kHz in stereo, all in test/ (made once)."""
    if not (folder / "corpus").exists():
        synthesize_corpus(folder / "corpus", **LONG_SET, test_songs=LONG_SET["songs"],
                          level_spread_db=DEMO_LEVEL_SPREAD_DB, engine="soundfont")
    if not (folder / "dataset").exists():
        build_dataset(folder / "corpus", folder / "dataset", config="expanded", seed=0, cache_dir=folder / "cache")
    return folder


def parse_shape(text: str) -> tuple[int, float]:
    songs, seconds = text.split("x")
    return int(songs), float(seconds)


def markdown(rows: list[dict]) -> str:
    lines = ["| trained on | seeds | short: joint | balanced | long: joint | balanced | procedural: joint | balanced |",
             "|---|---|---|---|---|---|---|---|"]
    for shape in dict.fromkeys(r["shape"] for r in rows):
        group = [r for r in rows if r["shape"] == shape]
        songs, seconds = parse_shape(shape)
        cells = [mean_spread([r[test][key] for r in group]) for test in TESTS for key in ("joint", "balanced")]
        lines.append(f"| {songs} songs x {seconds:g} s | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/song_length")
    parser.add_argument("--corpora", default="bench_out/generalisation", help="bench/generalisation.py's --out")
    parser.add_argument("--shapes", nargs="+", default=["600x10", "150x40"],
                        help="training corpora as SONGSxSECONDS")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--limit", type=int, default=660, help="rows of each 10 s test split")
    parser.add_argument("--long-limit", type=int, default=900, help="rows of the long held-out set")
    args = parser.parse_args()
    out, corpora = Path(args.out), Path(args.corpora)
    out.mkdir(parents=True, exist_ok=True)
    tests = {"short": (prepare_corpus(corpora / "soundfont", "soundfont", *SHORT_SONGS), args.limit),
             "long": (held_out_long(out / "long"), args.long_limit),
             "procedural": (prepare_corpus(corpora / "procedural", "procedural", *SHORT_SONGS), args.limit)}
    results_path = out / "song_length.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["shape"], r["seed"]) for r in rows}
    for shape in args.shapes:
        songs, seconds = parse_shape(shape)
        train = tests["short"][0] if (songs, seconds) == SHORT_SONGS else prepare_corpus(
            out / f"soundfont-{shape}", "soundfont", songs, seconds)
        for seed in args.seeds:
            if (shape, seed) in done:
                continue
            model_dir, seconds_per_step = train_variant(f"{shape}-seed{seed}", {}, train, out, args.steps, seed)
            run = out / "eval" / f"{shape}-seed{seed}"
            rows.append({"shape": shape, "seed": seed, "steps": args.steps, "seconds_per_step": seconds_per_step,
                         **{test: score(model_dir, folder, run / test, limit) for test, (folder, limit) in tests.items()}})
            write_file_atomic(results_path, json.dumps(rows, indent=2) + "\n")  # a rerun goes on from here
    table = markdown(rows)
    write_file_atomic(out / "song_length.md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
