"""How far does a trained model carry to held-out songs made another way: another SoundFont, another balance?

An outside set plays its own songs through sampled instruments with a script of its own. Two things such a script may
do otherwise than the training corpus are measured on `bench/song_length.py`'s held-out set (30 songs of 40 s from
another synth seed, stereo at 44.1 kHz, only `test/`, played by the default SoundFont: `held-out`):
- `sf:NAME`: the same songs, with the same levels, played by another General MIDI SoundFont (`--soundfont NAME=PATH`);
- `STEM+D`, `STEM-D`: one stem of every song moved by D dB before any flaw (`--move STEM=D`), a convention that sets
  that stem louder or quieter in a balanced mix; "balanced" means the moved balance (`bench/balance.py`'s
  `rebalance`), so a model that expects the training corpus's balance calls those mixes flawed;
- `as NAME`: every song's stems levelled by another script's convention (`--convention`, `bench/balance.py`'s
  CONVENTIONS: `equal-loudness`, Slakh2100's rule; `loudness`, this corpus's rule now; `rms`, its rule until
  2026-12-07);
- `midi`, `midi as NAME` (with `--midi-dir`): human-written songs, `bench/midi_songs.py`'s set of that folder's MIDI
  files, with the balance their arrangers wrote and levelled by each convention.
Scores each `--model NAME=DIR` with ranked decoding on every test row (or the first `--limit`); models named
`RECIPE/SEED` are grouped by recipe. Writes `OUT/held_out.json`, `.md` (one row per model, then mean ± sd over each
recipe's) and `.png`; resumes from the JSON.

    .venv/bin/python bench/held_out.py --model seed0=DIR [--model seed1=DIR ...] [--out bench_out/held_out]
        [--soundfont musescore=/usr/share/sounds/sf2/MuseScore_General_Full.sf2] [--move bass=3 bass=-3 ...]
        [--convention equal-loudness rms] [--midi-dir /usr/share/games/openttd/baseset/openmsx] [--limit ROWS]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from unittest import mock

from dataset_builder.synth.soundfont import SOUNDFONT_ENV
from mixingbuddy.files import write_file_atomic
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

sys.path.insert(0, str(Path(__file__).parent))
from balance import markdown as balance_table  # noqa: E402
from balance import CONVENTIONS, rebalanced, score  # noqa: E402
from generalisation import mean_spread, save_figure, seed_bar  # noqa: E402
from midi_songs import midi_set  # noqa: E402
from song_length import held_out_long  # noqa: E402

DEFAULT_MOVES = ("bass=3", "bass=-3", "drums=3", "drums=-3", "vocals=3", "vocals=-3")


def parse_move(text: str) -> tuple[str, float]:
    """`STEM=DB` (e.g. `bass=-3`) -> (stem, dB); a clear argparse error otherwise."""
    stem, _, db = text.partition("=")
    try:
        move = float(db)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write STEM=DB, e.g. bass=-3") from None
    if stem not in STEMS:
        raise argparse.ArgumentTypeError(f"{text!r}: the stem must be one of {', '.join(STEMS)}")
    return stem, move


def played_by(folder: Path, soundfont: str) -> Path:
    """`held_out_long(folder)` with every song played by `soundfont` (made once)."""
    with mock.patch.dict(os.environ, {SOUNDFONT_ENV: soundfont}):
        return held_out_long(folder)


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The models by recipe: a name `RECIPE/SEED` belongs to RECIPE, any other name to one unnamed group."""
    grouped = {}
    for row in rows:
        grouped.setdefault(row["model"].rpartition("/")[0], []).append(row)
    return grouped


def markdown(rows: list[dict], tests: list[str]) -> str:
    """`bench/balance.py`'s table (a row per model), then the mean ± sd over the models of each recipe."""
    table = balance_table(rows, tests)
    for recipe, group in groups(rows).items():
        if len(group) > 1:
            cells = [mean_spread([r[t][key] for r in group]) for t in tests for key in ("joint", "balanced")]
            table += f"\n| {recipe or 'mean'} ± sd of {len(group)} | " + " | ".join(cells) + " |"
    return table


def plot(rows: list[dict], tests: list[str], path: Path) -> None:
    """Joint and balanced accuracy per held-out set (joint only, one bar per recipe, when there are several recipes):
    bars are the mean over the models, dots the models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = groups(rows)
    bars = ([(recipe, group, "joint") for recipe, group in grouped.items()] if len(grouped) > 1 else
            [("", rows, "joint"), ("", rows, "balanced")])
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for k, (recipe, group, key) in enumerate(bars):
        label = f"{recipe}: {key}" if recipe else ("balanced mixes" if key == "balanced" else key)
        for x, test in enumerate(tests):
            seed_bar(ax, x + (k - (len(bars) - 1) / 2) * width, [100 * r[test][key] for r in group], width, f"C{k}",
                     label if x == 0 else None)
    ax.set_xticks(range(len(tests)), tests, fontsize=8)
    ax.set_ylabel("accuracy (%), ranked")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Held-out 40 s songs as made, played by other SoundFonts, re-balanced, or human-written (midi);\n"
                 "bars: the mean of each recipe's models, dots: each model", fontsize=9)
    save_figure(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/held_out")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                        help="a trained model to score (the last '=' splits the name from the folder)")
    parser.add_argument("--soundfont", action="append", default=[], metavar="NAME=PATH",
                        help="another General MIDI .sf2 to play the held-out songs with")
    parser.add_argument("--move", type=parse_move, nargs="*", default=[parse_move(m) for m in DEFAULT_MOVES],
                        metavar="STEM=DB", help=f"one stem moved in every song (default: {' '.join(DEFAULT_MOVES)})")
    parser.add_argument("--convention", nargs="*", choices=CONVENTIONS, default=list(CONVENTIONS),
                        help="the songs levelled by these conventions (default: all)")
    parser.add_argument("--midi-dir", type=Path, default=None,
                        help="also score human-written songs: bench/midi_songs.py's set of this folder's MIDI files")
    parser.add_argument("--limit", type=int, default=None, help="score only the first ROWS rows of each set")
    args = parser.parse_args()
    out = Path(args.out)
    base = held_out_long(out / "held-out")
    folders = {"held-out": base}
    for spec in args.soundfont:
        name, path = spec.split("=", 1)
        folders[f"sf:{name}"] = played_by(out / f"sf-{name}", path)
    for stem, db in args.move:
        folders[f"{stem}{db:+g}"] = rebalanced(base / "corpus", out / f"{stem}{db:+g}", 0.0, {stem: db})
    for name in args.convention:
        folders[f"as {name}"] = rebalanced(base / "corpus", out / f"as-{name}", 0.0, {}, name)
    if args.midi_dir:
        folders["midi"] = midi_set(out / "midi", args.midi_dir)
        for name in args.convention:
            folders[f"midi as {name}"] = rebalanced(folders["midi"] / "corpus", out / f"midi-as-{name}", 0.0, {}, name)
    results_path = out / "held_out.json"
    rows = {r["model"]: r for r in json.loads(results_path.read_text())} if results_path.exists() else {}
    for name, model in (spec.rsplit("=", 1) for spec in args.model):
        row = rows.setdefault(name, {"model": name, "dir": model})
        for test, folder in folders.items():
            if test not in row:
                row[test] = score(Path(model), folder, out / "eval" / name / test, args.limit)
                write_file_atomic(results_path, json.dumps(list(rows.values()), indent=2) + "\n")  # resumes here
    chosen = [rows[spec.rsplit("=", 1)[0]] for spec in args.model]
    table = markdown(chosen, list(folders))
    write_file_atomic(out / "held_out.md", table + "\n")
    plot(chosen, list(folders), out / "held_out.png")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
