"""Does the demo's recipe learn level balance or the synthesiser? Train on one engine's corpus, test on each engine's.

For each training corpus (procedural, soundfont, both) and seed, the demo's recipe (`configs/tiny.yaml`) is trained
on that corpus's train split and scored with ranked and greedy decoding on the test split of the procedural corpus
and of the soundfont corpus: joint accuracy and the accuracy on balanced mixes (`no_error`). Every corpus has the
demo's size and settings (songs, seconds, rate, level spread, mixing chain) and the same synth seed, so the three
hold the same compositions — song `i` has the same plan in each — and their test songs are the same held-out
compositions: only the sound differs. The log-mel statistics MLP (the strongest simple probe; see
`bench/ablations.py`), given the statistics of the clips the recipe hears (its `audio_inputs`), is trained on the
same train splits and scored on the same test rows.

Writes `OUT/generalisation.json`, `.md` (per seed and mean ± spread over seeds) and `.png`; reuses corpora, data
sets and stem caches already in `OUT`.

    .venv/bin/python bench/generalisation.py [--out bench_out/generalisation] [--steps 2000] [--seeds 0 1 2]
        [--limit ROWS] [--train procedural soundfont both]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import yaml
from datasets import load_dataset

from mixingbuddy import config_file
from mixingbuddy.demo import DEMO_LEVEL_SPREAD_DB, DEMO_SAMPLE_RATE, DEMO_SECONDS, DEMO_SONGS
from mixingbuddy.evaluation.baselines import (
    anchor_one_hot,
    fit_statistics_classifier,
    log_mel_statistics,
    score_classifier,
)
from mixingbuddy.evaluation.generation import evaluate_split
from mixingbuddy.files import write_file_atomic
from mixingbuddy.models.tiny import build_tiny_model_and_processor
from mixingbuddy.training.collator import FlawedMixCollator, advice_labels

sys.path.insert(0, str(Path(__file__).parent))
from ablations import train_variant  # noqa: E402

TEST_ENGINES = ("procedural", "soundfont")


def prepare_corpus(folder: Path, engine: str, songs: int = DEMO_SONGS, seconds: float = DEMO_SECONDS) -> Path:
    """`folder/{corpus,dataset,cache}` of the demo's settings played by `engine` (made once)."""
    from dataset_builder import build_dataset
    from dataset_builder.synth import synthesize_corpus

    if not (folder / "corpus").exists():
        synthesize_corpus(folder / "corpus", songs=songs, seconds=seconds, seed=0, level_spread_db=DEMO_LEVEL_SPREAD_DB,
                          sample_rate=DEMO_SAMPLE_RATE, channels=1, engine=engine)
    if not (folder / "dataset").exists():
        build_dataset(folder / "corpus", folder / "dataset", config="expanded", seed=0, cache_dir=folder / "cache")
    return folder


def test_rows(folder: Path, limit: int | None) -> list[dict]:
    test = load_dataset(str(folder / "dataset"))["test"]
    return [test[i] for i in range(min(limit or len(test), len(test)))]


class ProbeFeatures:
    """The log-mel statistics probe's inputs (each clip's statistics side by side + anchor one-hot, advice class) of a
    corpus's split, computed once and shared by every seed; by default it hears the clips the demo's recipe hears."""

    def __init__(self, folders: dict[str, Path], limit: int | None, audio_inputs: str | None = None):
        recipe = yaml.safe_load(config_file("tiny.yaml").read_text())
        audio_inputs = audio_inputs or recipe["audio_inputs"]
        model, self.processor = build_tiny_model_and_processor(
            text_hidden_size=recipe["tiny_text_hidden_size"], audio_frontend="log_mel",
            audio_pooling=recipe["audio_pooling"], mel_hop_length=recipe["mel_hop_length"], audio_inputs=audio_inputs)
        self.log_mel = model.model.audio_tower.log_mel  # fixed (untrained) mel filter bank: no seed dependence
        self.folders, self.limit, self.cache = folders, limit, {}

    def rows(self, engine: str, split: str) -> list[dict]:
        if split == "test":
            return test_rows(self.folders[engine], self.limit)
        rows = load_dataset(str(self.folders[engine] / "dataset"))[split]
        return [rows[i] for i in range(len(rows))]

    def __call__(self, engine: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if (engine, split) not in self.cache:
            rows, folder = self.rows(engine, split), self.folders[engine]
            collator = FlawedMixCollator(self.processor, folder / "corpus", cache_dir=folder / "cache")
            statistics_ = log_mel_statistics(rows, collator, self.log_mel)
            self.cache[engine, split] = torch.cat([statistics_, anchor_one_hot(rows)], -1), advice_labels(rows)
        return self.cache[engine, split]


def probe_results(features: ProbeFeatures, train: str, seed: int, tests=TEST_ENGINES) -> dict[str, dict]:
    """The log-mel statistics MLP trained on `train`'s corpus with `seed`: {test engine: metrics}."""
    probe = fit_statistics_classifier(features(train, "train"), features(train, "validation"), seed=seed)
    with torch.no_grad():
        return {engine: score_classifier(features.rows(engine, "test"), probe(features(engine, "test")[0]))[0]
                for engine in tests}


def evaluate_on(model_dir: Path, folders: dict[str, Path], out: Path, limit: int | None) -> dict[str, dict]:
    """Ranked and greedy decoding of a trained model on each corpus's test rows: {corpus: {decoding: metrics}}."""
    return {name: evaluate_split(str(model_dir), folder / "dataset", out / name, folder / "corpus", batch_size=64,
                                 limit=limit, decodings=("ranked", "greedy"), cache_dir=folder / "cache")
            for name, folder in folders.items()}


def mean_spread(values) -> str:
    """The mean ± the standard deviation over seeds (the mean alone for one seed), as percentages."""
    mean = statistics.mean(values)
    return f"{mean:.1%} ± {statistics.stdev(values):.1%}" if len(values) > 1 else f"{mean:.1%}"


def write_report(out: Path, name: str, rows: list[dict], table: str, plot_rows) -> None:
    """`out/NAME.md` (the table), `out/NAME.png` (`plot_rows(rows, path)`), and the table printed."""
    write_file_atomic(out / f"{name}.md", table + "\n")
    plot_rows(rows, out / f"{name}.png")
    print(table)


def cell(metrics: dict) -> dict:
    return {"joint": metrics["overall"]["joint_accuracy"], "balanced": metrics["by_category"]["no_error"]["joint_accuracy"],
            "n": metrics["overall"]["n"]}


def summary(rows: list[dict]) -> str:
    """Markdown: one line per (model, train corpus, decoding) with each test corpus's mean ± spread over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["train"], r["decoding"]), []).append(r)
    head = " | ".join(f"{e} joint | {e} balanced" for e in TEST_ENGINES)
    lines = [f"| model | trained on | decoding | seeds | {head} |", "|---|---|---|---|" + "---|" * 2 * len(TEST_ENGINES)]

    for (model, train, decoding), group in groups.items():
        values = " | ".join(f"{mean_spread([g[e]['joint'] for g in group])} | "
                            f"{mean_spread([g[e]['balanced'] for g in group])}" for e in TEST_ENGINES)
        lines.append(f"| {model} | {train} | {decoding} | {len(group)} | {values} |")
    return "\n".join(lines)


def seed_bar(ax, at: float, values: list[float], width: float, color: str, label: str | None = None) -> None:
    """A bar at the mean of `values` (one per seed or model), each value a dot on it."""
    ax.bar(at, statistics.mean(values), width, color=color, label=label)
    ax.plot([at] * len(values), values, "k.", markersize=4)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot(rows: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = [r for r in rows if r["decoding"] in ("ranked", "classifier")]
    labels = sorted({(r["model"], r["train"]) for r in ranked}, key=lambda k: (k[0] != "demo LM", k[1]))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(TEST_ENGINES)
    for k, engine in enumerate(TEST_ENGINES):
        for x, label in enumerate(labels):
            values = [100 * r[engine]["joint"] for r in ranked if (r["model"], r["train"]) == label]
            seed_bar(ax, x + (k - 0.5) * width, values, width, f"C{k}", f"tested on {engine}" if x == 0 else None)
    ax.set_xticks(range(len(labels)), [f"{'LM' if m == 'demo LM' else 'MLP'}\non {t}" for m, t in labels], fontsize=8)
    ax.set_ylabel("joint accuracy (%), ranked / classifier")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Trained on one corpus (LM: the demo's recipe, ranked; MLP: the log-mel probe),\n"
                 "tested on each engine's held-out songs; dots: seeds", fontsize=9)
    save_figure(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/generalisation")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model (default: the demo's 2000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", nargs="+", choices=("procedural", "soundfont", "both"),
                        default=["procedural", "soundfont", "both"])
    parser.add_argument("--limit", type=int, default=None, help="score only the first ROWS test rows of each corpus")
    parser.add_argument("--songs", type=int, default=DEMO_SONGS)
    parser.add_argument("--seconds", type=float, default=DEMO_SECONDS)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engines = dict.fromkeys([*TEST_ENGINES, *args.train])
    folders = {engine: prepare_corpus(out / engine, engine, args.songs, args.seconds) for engine in engines}
    results_path = out / "generalisation.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["model"], r["train"], r["seed"], r["decoding"]) for r in rows}
    features = ProbeFeatures(folders, args.limit)

    for train in args.train:
        for seed in args.seeds:
            if ("demo LM", train, seed, "ranked") not in done:
                model_dir, seconds_per_step = train_variant(f"{train}-seed{seed}", {}, folders[train], out, args.steps,
                                                            seed)
                scores = evaluate_on(model_dir, {engine: folders[engine] for engine in TEST_ENGINES},
                                     out / "eval" / f"{train}-seed{seed}", args.limit)
                for decoding in ("ranked", "greedy"):
                    rows.append({"model": "demo LM", "train": train, "seed": seed, "decoding": decoding,
                                 "steps": args.steps, "seconds_per_step": seconds_per_step,
                                 **{engine: cell(scores[engine][decoding]) for engine in TEST_ENGINES}})
            if ("log-mel MLP", train, seed, "classifier") not in done:
                probe = probe_results(features, train, seed)
                rows.append({"model": "log-mel MLP", "train": train, "seed": seed, "decoding": "classifier",
                             **{engine: cell(probe[engine]) for engine in TEST_ENGINES}})
            write_file_atomic(results_path, json.dumps(rows, indent=2) + "\n")  # a rerun goes on from here
    write_report(out, "generalisation", rows, summary(rows), plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
