"""Which input should the model hear: the mix (the paper's), the mix and the anchor stem, or every stem?

For each `audio_inputs` setting and seed, the demo's recipe (`configs/tiny.yaml` with that setting) is trained on one
of `bench/generalisation.py`'s corpora (the demo's songs, settings and seed; `--corpus`: "both" engines by default,
"soundfont" is the demo's own corpus) and scored with ranked
and greedy decoding on its test rows — joint accuracy, per category (balanced = `no_error`) and per target stem — and,
for transfer across timbres, on the test rows of the procedural and the soundfont corpus (the same held-out
compositions played by one engine). The log-mel statistics MLP is given the same clips (each clip's statistics side
by side). Tokens per example and training seconds per step are recorded per setting. With `--clip-levels` the
multi-clip settings are trained with `clip_levels` (each clip's level relative to the mix given to its tokens) and
recorded as "SETTING + levels".

Writes `OUT/audio_inputs.json`, `.md` (per seed, and mean ± spread) and `.png`; resumes from the JSON.

    .venv/bin/python bench/audio_inputs.py [--out bench_out/audio_inputs] [--corpora bench_out/generalisation]
        [--corpus both|procedural|soundfont] [--steps 2000] [--seeds 0 1 2] [--limit ROWS] [--settings mix mix+anchor stems] [--clip-levels]
        [--no-probe]
"""

from __future__ import annotations

import argparse
import json
import statistics
from functools import partial
from pathlib import Path

import yaml

from generalisation import (
    TEST_ENGINES,
    ProbeFeatures,
    evaluate_on,
    mean_spread,
    prepare_corpus,
    probe_results,
    save_figure,
    seed_bar,
    train_variant,
    write_report,
)
from mixingbuddy import config_file
from mixingbuddy.files import write_file_atomic
from mixingbuddy.hub.configuration_mixingbuddy import MixingBuddyConfig
from mixingbuddy.hub.vocabulary_mixingbuddy import AUDIO_INPUTS

DEMO_CORPUS = "both"
CATEGORIES = ("very_quiet", "quiet", "no_error", "loud", "very_loud")
TARGETS = ("bass", "drums", "vocals")


LEVELS = " + levels"  # the suffix of a setting trained with clip_levels


def audio_tokens(setting: str) -> int:
    recipe = yaml.safe_load(config_file("tiny.yaml").read_text())
    return MixingBuddyConfig(audio_frontend="log_mel", mel_hop_length=recipe["mel_hop_length"],
                             audio_pooling=recipe["audio_pooling"],
                             audio_inputs=setting.removesuffix(LEVELS)).audio_tokens_per_prompt


def result(metrics: dict[str, dict], corpus: str = DEMO_CORPUS) -> dict:
    """Joint accuracy on the rows of the corpus trained on, per category and target stem, and on each engine's rows."""
    demo = metrics[corpus]
    return {"joint": demo["overall"]["joint_accuracy"], "n": demo["overall"]["n"],
            **{c: demo["by_category"][c]["joint_accuracy"] for c in CATEGORIES},
            **{t: demo["by_stem"][t]["joint_accuracy"] for t in TARGETS},
            **{f"{e} joint": metrics[e]["overall"]["joint_accuracy"] for e in TEST_ENGINES}}


COLUMNS = ("joint", *CATEGORIES, *TARGETS, *(f"{e} joint" for e in TEST_ENGINES))


def markdown(rows: list[dict], corpus: str = DEMO_CORPUS) -> str:
    columns = [c for c in COLUMNS if c != f"{corpus} joint"]  # the trained-on engine's songs are the joint column
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["setting"], r["decoding"]), []).append(r)
    lines = ["| model | input | decoding | seeds | tokens | s/step | " + " | ".join(columns) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(columns)]
    for (model, setting, decoding), group in groups.items():
        speeds = [g["seconds_per_step"] for g in group if g.get("seconds_per_step") is not None]
        speed = f"{statistics.mean(speeds):.2f}" if speeds else "—"
        lines.append(f"| {model} | {setting} | {decoding} | {len(group)} | {group[0]['tokens']} | {speed} | "
                     + " | ".join(mean_spread([g[c] for g in group]) for c in columns) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, corpus: str = DEMO_CORPUS):
    """Bars per setting: the trained-on corpus's joint and balanced accuracy, then each other engine's songs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    shown = [("joint", "demo corpus, joint"), ("no_error", "balanced mixes"),
             *((f"{e} joint", f"{e} test songs") for e in TEST_ENGINES if e != corpus)]
    kinds = [(m, d) for m, d in (("demo LM", "ranked"), ("log-mel MLP", "classifier"))]
    bars = [(s, kind) for kind in kinds for s in dict.fromkeys(r["setting"] for r in rows if r["model"] == kind[0])]
    width, centre = 0.8 / len(shown), (len(shown) - 1) / 2
    for k, (key, label) in enumerate(shown):
        for x, (setting, (model, decoding)) in enumerate(bars):
            values = [100 * r[key] for r in rows if (r["setting"], r["model"], r["decoding"]) == (setting, model, decoding)]
            if values:
                seed_bar(ax, x + (k - centre) * width, values, width, f"C{k}", label if x == 0 else None)
    ticks = [f"{'LM' if m == 'demo LM' else 'MLP'}: {s}".replace(LEVELS, "\n+ levels") for s, (m, _) in bars]
    ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%), ranked / classifier")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("What the model hears: the mix, the mix and the anchor, or every stem (dots: seeds)", fontsize=10)
    save_figure(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/audio_inputs")
    parser.add_argument("--corpora", default="bench_out/generalisation", help="bench/generalisation.py's --out")
    parser.add_argument("--corpus", choices=(DEMO_CORPUS, *TEST_ENGINES), default=DEMO_CORPUS,
                        help="the corpus trained on and scored per category (default: both engines)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", choices=AUDIO_INPUTS, default=list(AUDIO_INPUTS))
    parser.add_argument("--limit", type=int, default=None, help="score only the first ROWS test rows of each corpus")
    parser.add_argument("--clip-levels", action="store_true",
                        help="train mix+anchor and stems with clip_levels (recorded as 'SETTING + levels')")
    parser.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                        help="also fit the log-mel probe per seed (its features take minutes per setting and process)")
    args = parser.parse_args()
    out, corpora = Path(args.out), Path(args.corpora)
    out.mkdir(parents=True, exist_ok=True)
    folders = {e: prepare_corpus(corpora / e, e) for e in dict.fromkeys((args.corpus, *TEST_ENGINES))}
    results_path = out / "audio_inputs.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["model"], r["setting"], r["seed"]) for r in rows}
    for audio_inputs in args.settings:
        levels = args.clip_levels and audio_inputs != "mix"
        setting = audio_inputs + LEVELS if levels else audio_inputs
        features = ProbeFeatures(folders, args.limit, audio_inputs=audio_inputs)
        for seed in args.seeds:
            common = {"setting": setting, "seed": seed, "steps": args.steps, "tokens": audio_tokens(setting)}
            if ("demo LM", setting, seed) not in done:
                name = f"{setting}-seed{seed}".replace(LEVELS, "-levels")
                overrides = {"audio_inputs": audio_inputs, **({"clip_levels": True} if levels else {})}
                model_dir, seconds_per_step = train_variant(name, overrides, folders[args.corpus], out, args.steps,
                                                            seed)
                scores = evaluate_on(model_dir, folders, out / "eval" / name, args.limit)
                for decoding in ("ranked", "greedy"):
                    rows.append({"model": "demo LM", "decoding": decoding, "seconds_per_step": seconds_per_step,
                                 **common, **result({e: s[decoding] for e, s in scores.items()}, args.corpus)})
            if args.probe and ("log-mel MLP", setting, seed) not in done:
                metrics = probe_results(features, args.corpus, seed, tests=tuple(folders))
                rows.append({"model": "log-mel MLP", "decoding": "classifier", **common, **result(metrics, args.corpus)})
            write_file_atomic(results_path, json.dumps(rows, indent=2) + "\n")
    write_report(out, "audio_inputs", rows, markdown(rows, args.corpus),
                 partial(plot, corpus=args.corpus))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
