"""Ablations of the demo's recipe on the demo's data: which choices make the tiny model learn, and what the language
model adds over classifiers without one.

Every language-model variant is `configs/tiny.yaml` with one change, trained with the same step budget and seed on the
demo's train split and scored with ranked decoding on the demo's test rows (the winner also with greedy and
constrained decoding). The baselines are scored with the same metrics through their class -> advice mapping:

- the advice head alone: the same front-end (tower, projector) and the advice head trained as a 13-way classifier
  with the same steps, learning rate and augmentation, without the language model;
- an MLP (one hidden layer of 256, GELU, dropout 0.3) and a linear classifier on clip-average log-mel statistics (mean
  and standard deviation of each mel bin over the clip) plus the anchor as a one-hot, early-stopped on validation.

Writes `OUT/ablations.json`, `OUT/ablations.md` and `OUT/ablations.png` and prints the table; each row states its
seed. Needs the demo's folder (`make demo` or `mixingbuddy demo` first: its corpus and data set are reused).

Run it as one process. Its evaluations use `evaluate_split`, which shares the batches out under `accelerate launch`
as `mixingbuddy evaluate` does, but there every variant would also train data-parallel with N times the global batch
(other numbers than one process's) and every process would train the baselines and write the files.

    .venv/bin/python bench/ablations.py [--demo demo_out] [--out bench_out/ablations] [--steps 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml
from datasets import load_dataset

from mixingbuddy import config_file
from mixingbuddy.hub.configuration_mixingbuddy import MixingBuddyConfig
from mixingbuddy.evaluation.baselines import advice_head_logits, score_classifier, statistics_baselines, train_advice_head
from mixingbuddy.evaluation.generation import evaluate_split
from mixingbuddy.files import write_file_atomic
from mixingbuddy.models.tiny import build_tiny_model_and_processor
from mixingbuddy.training.collator import FlawedMixCollator
from mixingbuddy.training.log_mel import fit_log_mel_statistics
from mixingbuddy.training.run import run

# name -> (what it asks, overrides of configs/tiny.yaml); "recipe" is the demo's own configuration.
VARIANTS = {
    "recipe": ("the demo's recipe", {}),
    "8 tokens": ("audio tokens", {"audio_pooling": 32}),
    "125 tokens": ("audio tokens", {"audio_pooling": 2}),
    "aux none": ("auxiliary loss", {"aux_loss": "none"}),
    "aux norm": ("auxiliary loss", {"aux_loss": "norm", "aux_loss_weight": 0.05}),
    "fixed gains": ("gain per row", {"fresh_gains": False}),
}


def train_variant(name: str, overrides: dict, demo: Path, out: Path, steps: int, seed: int) -> tuple[Path, float]:
    """Train one variant; (model folder, training seconds per step)."""
    model_dir = out / "models" / name.replace(" ", "_")
    argv = ["--config", str(config_file("tiny.yaml")), "--dataset_name", str(demo / "dataset"),
            "--stems_dir", str(demo / "corpus"), "--stem_cache_dir", str(demo / "cache"), "--output_dir", str(model_dir),
            "--seed", str(seed), "--max_steps", str(steps), "--eval_strategy", "no", "--save_strategy", "no",
            "--overwrite_output_dir", "true"]  # a rerun into the same --out replaces the earlier variant's run
    for key, value in overrides.items():
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    start = time.perf_counter()
    trainer = run(argv)
    runtime = next(log["train_runtime"] for log in trainer.state.log_history if "train_runtime" in log)
    print(f"{name}: trained in {time.perf_counter() - start:.0f} s")
    return model_dir, runtime / steps


def tokens(recipe: dict, pooling: int) -> int:
    """Audio tokens per 10 s clip of the recipe's log-mel front-end at `pooling`."""
    return MixingBuddyConfig(audio_frontend="log_mel", mel_hop_length=recipe["mel_hop_length"],
                             audio_pooling=pooling).audio_tokens_per_clip


def row(name: str, question: str, seed: int, metrics: dict, seconds_per_step: float | None, decoding: str) -> dict:
    o = metrics["overall"]
    return {"variant": name, "question": question, "seed": seed, "decoding": decoding, "n": o["n"],
            "joint": o["joint_accuracy"], "no_error": metrics["by_category"]["no_error"]["joint_accuracy"],
            "impossible": o["impossible_share"], "seconds_per_step": seconds_per_step}


def markdown(rows: list[dict]) -> str:
    lines = ["| variant | question | seed | decoding | rows | joint | no_error | impossible | train s/step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        speed = "—" if r["seconds_per_step"] is None else f"{r['seconds_per_step']:.2f}"
        lines.append(f"| {r['variant']} | {r['question']} | {r['seed']} | {r['decoding']} | {r['n']} | {r['joint']:.1%} "
                     f"| {r['no_error']:.1%} | {r['impossible']:.1%} | {speed} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, steps: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = [r for r in rows if r["decoding"] in ("ranked", "classifier")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ranked) + 1.2))
    colours = ["tab:blue" if r["decoding"] == "ranked" else "tab:gray" for r in ranked]
    ax.barh([r["variant"] for r in ranked], [100 * r["joint"] for r in ranked], color=colours)
    for y, r in enumerate(ranked):
        ax.text(100 * r["joint"] + 0.5, y, f"{r['joint']:.1%}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"joint accuracy on the demo's {ranked[0]['n']} test rows (%)")
    ax.set_title(f"{steps} steps each, seed {ranked[0]['seed']}: language model, ranked (blue); classifiers (grey)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="demo_out", help="a demo's folder (corpus/, dataset/)")
    parser.add_argument("--out", default="bench_out/ablations")
    parser.add_argument("--steps", type=int, default=500, help="training steps of every variant (default: 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=[*VARIANTS, "baselines"], help="run only these")
    args = parser.parse_args()
    demo, out = Path(args.demo), Path(args.out)
    if not (demo / "dataset").is_dir() or not (demo / "corpus").is_dir():
        print(f"ablations.py: {demo} has no corpus/ and dataset/; run `mixingbuddy demo --out {demo}` first.",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    recipe = yaml.safe_load(config_file("tiny.yaml").read_text())
    chosen = args.only or [*VARIANTS, "baselines"]
    rows, scores = [], {}

    for name, (question, overrides) in VARIANTS.items():
        if name not in chosen:
            continue
        pooling = overrides.get("audio_pooling", recipe["audio_pooling"])
        label = f"{name} ({tokens(recipe, pooling)} tokens)" if name == "recipe" else name
        model_dir, seconds_per_step = train_variant(name, overrides, demo, out, args.steps, args.seed)
        decodings = ("ranked", "greedy", "constrained") if name == "recipe" else ("ranked",)
        results = evaluate_split(str(model_dir), demo / "dataset", out / "eval" / name.replace(" ", "_"), demo / "corpus",
                                 batch_size=64, decodings=decodings, cache_dir=demo / "cache")
        for decoding, metrics in results.items():
            rows.append(row(label, question, args.seed, metrics, seconds_per_step, decoding))
        scores[name] = results["ranked"]["overall"]["joint_accuracy"]

    if "baselines" in chosen:
        dataset = load_dataset(str(demo / "dataset"))
        model, processor = build_tiny_model_and_processor(
            seed=args.seed, text_hidden_size=recipe["tiny_text_hidden_size"], audio_frontend="log_mel",
            audio_pooling=recipe["audio_pooling"], mel_hop_length=recipe["mel_hop_length"], aux_loss="label",
            projector_dropout=recipe["projector_dropout"])
        collator = FlawedMixCollator(processor, demo / "corpus", cache_dir=demo / "cache", augment=recipe["augment"],
                                     seed=args.seed, fresh_gains=recipe.get("fresh_gains", False))
        fit_log_mel_statistics(model, collator.eval_copy(), dataset["train"], recipe["feature_statistics_clips"])
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        train_advice_head(model, collator, dataset["train"], args.steps, recipe["learning_rate"], seed=args.seed)
        seconds_per_step = (time.perf_counter() - start) / args.steps
        test = [dataset["test"][i] for i in range(len(dataset["test"]))]
        metrics, _ = score_classifier(test, advice_head_logits(model, collator.eval_copy(), test))
        rows.append(row("advice head alone (13-way)", "what the LM adds", args.seed, metrics, seconds_per_step, "classifier"))
        tower = model.model.audio_tower
        for hidden, (metrics, _) in statistics_baselines(dataset, collator.eval_copy(), tower.log_mel, seed=args.seed).items():
            name = "log-mel statistics MLP" if hidden else "log-mel statistics, linear"
            rows.append(row(name, "what the LM adds", args.seed, metrics, None, "classifier"))

    table = markdown(rows)
    write_file_atomic(out / "ablations.md", table + "\n")
    write_file_atomic(out / "ablations.json", json.dumps(rows, indent=2) + "\n")
    plot(rows, out / "ablations.png", args.steps)
    print(table)
    if scores:
        print(f"\nBest language-model variant (ranked joint): {max(scores, key=scores.get)}; seed {args.seed}, "
              f"{args.steps} steps each. Files in {out}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
