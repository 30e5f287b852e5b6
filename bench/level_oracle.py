"""How well can any model do? A level oracle: a classifier that knows every stem's exact level in the flawed mix.

A flaw is a gain on one stem, so all that a balance judgement can rest on is the stems' levels. The oracle is the
probe's MLP (`fit_statistics_classifier`) on each stem's level relative to the mix (`StemLevels`, computed from the
stems themselves, which no input setting of the model gives it so exactly) plus the anchor. It learns the corpus's
balance convention from the soundfont corpus's train split, each row heard `--passes` times at fresh gains (and with
`other` moved within ±`--other-spread` dB, as the demo's recipe trains), early-stopped on validation, and is scored
like the model on the test rows of each corpus: the soundfont corpus itself, the procedural one, and
`bench/balance.py`'s re-balanced variants. Its errors there are rows that perfect level knowledge leaves ambiguous:
a song's own balance strays ±1.5 dB per stem, and within a song each 10 s chunk strays more, so a +3.5 dB flaw and a
balanced mix can sound alike. Its accuracy bounds what the model can reach under the same convention.

Writes `OUT/level_oracle.json` and `.md` (mean ± sd over seeds; per category on the soundfont test rows).

    .venv/bin/python bench/level_oracle.py [--corpora bench_out/generalisation] [--balance bench_out/balance]
        [--out bench_out/level_oracle] [--seeds 0 1 2] [--passes 20] [--other-spread 0 6] [--limit ROWS]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from datasets import load_dataset

from dataset_builder import StemCache
from dataset_builder.rows import as_row
from mixingbuddy.demo import DEMO_SAMPLE_RATE
from mixingbuddy.evaluation.baselines import StemLevels, fit_statistics_classifier, score_classifier, stem_level_features
from mixingbuddy.files import write_file_atomic
from mixingbuddy.hub.vocabulary_mixingbuddy import CATEGORIES
from mixingbuddy.training.collator import advice_labels

sys.path.insert(0, str(Path(__file__).parent))
from balance import VARIANTS  # noqa: E402
from generalisation import TEST_ENGINES, cell, mean_spread  # noqa: E402


class Corpus:
    """A bench corpus folder (`corpus/`, `dataset/`, optional `cache/`): its rows by split and their stem levels."""

    def __init__(self, folder: Path):
        self.dataset = load_dataset(str(folder / "dataset"))
        cache = StemCache(folder / "corpus", DEMO_SAMPLE_RATE, cache_dir=folder / "cache")
        self.levels = StemLevels(cache)

    def rows(self, split: str, limit: int | None = None) -> list[dict]:
        rows = self.dataset[split]
        return [as_row(rows[i]) for i in range(min(limit or len(rows), len(rows)))]

    def features(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows(split, limit)
        return stem_level_features(rows, self.levels), advice_labels(rows)

    def training_features(self, passes: int, other_spread_db: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The train rows `passes` times, each pass at fresh gains (and `other` moved)."""
        rows = self.rows("train")
        features = [stem_level_features(rows, self.levels, seed=p, other_spread_db=other_spread_db) for p in range(passes)]
        return torch.cat(features), advice_labels(rows).repeat(passes)


def markdown(results: list[dict], tests: list[str]) -> str:
    lines = ["| oracle trained with | seeds | " + " | ".join(f"{t} joint | {t} balanced" for t in tests) + " |",
             "|---|---|" + "---|---|" * len(tests)]
    groups: dict[float, list[dict]] = {}
    for r in results:
        groups.setdefault(r["other_spread_db"], []).append(r)
    for spread, group in groups.items():
        cells = " | ".join(f"{mean_spread([g[t]['joint'] for g in group])} | "
                           f"{mean_spread([g[t]['balanced'] for g in group])}" for t in tests)
        lines.append(f"| other_spread_db {spread:g} | {len(group)} | {cells} |")
    lines += ["", "Per category on the soundfont test rows (joint accuracy, mean over seeds):", "",
              "| oracle trained with | " + " | ".join(CATEGORIES) + " |", "|---|" + "---|" * len(CATEGORIES)]
    for spread, group in groups.items():
        cells = " | ".join(f"{sum(g['soundfont_categories'][c] for g in group) / len(group):.1%}" for c in CATEGORIES)
        lines.append(f"| other_spread_db {spread:g} | {cells} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="bench_out/generalisation", help="bench/generalisation.py's --out")
    parser.add_argument("--balance", default="bench_out/balance", help="bench/balance.py's --out (its variants)")
    parser.add_argument("--out", default="bench_out/level_oracle")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--passes", type=int, default=20, help="fresh-gain passes over the train rows")
    parser.add_argument("--other-spread", type=float, nargs="+", default=[0.0, 6.0])
    parser.add_argument("--limit", type=int, default=None, help="score only the first ROWS test rows of each corpus")
    args = parser.parse_args()
    folders = {engine: Path(args.corpora) / engine for engine in TEST_ENGINES}
    folders |= {name: Path(args.balance) / "corpora" / name for name in VARIANTS}
    missing = [str(f) for f in folders.values() if not (f / "dataset").is_dir()]
    if missing:
        print(f"error: no data set in {', '.join(missing)}: run bench/generalisation.py and bench/balance.py first",
              file=sys.stderr)
        return 2
    corpora = {name: Corpus(folder) for name, folder in folders.items()}
    tests = {name: (corpus.rows("test", args.limit), corpus.features("test", args.limit)[0])
             for name, corpus in corpora.items()}
    validation = corpora["soundfont"].features("validation")
    results = []
    for spread in args.other_spread:
        train = corpora["soundfont"].training_features(args.passes, spread)
        for seed in args.seeds:
            oracle = fit_statistics_classifier(train, validation, seed=seed, patience=10)
            with torch.no_grad():
                metrics = {name: score_classifier(rows, oracle(x))[0] for name, (rows, x) in tests.items()}
            results.append({"other_spread_db": spread, "seed": seed, "passes": args.passes,
                            **{name: cell(m) for name, m in metrics.items()},
                            "soundfont_categories": {c: m["joint_accuracy"]
                                                     for c, m in metrics["soundfont"]["by_category"].items()}})
            print(json.dumps(results[-1]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out / "level_oracle.json", json.dumps(results, indent=2) + "\n")
    table = markdown(results, list(tests))
    write_file_atomic(out / "level_oracle.md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
