"""`mixingbuddy study report`: what the participants' ratings say, with intervals, agreement and the parser beside them.

Intervals are 95 % percentile bootstraps that resample items, not single ratings: the ratings of one item (by several
participants) are not independent, and resampling them one by one would make the intervals too narrow.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from pathlib import Path

import krippendorff
import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from ..files import atomic_folder
from ..hub.vocabulary_mixingbuddy import CATEGORIES, TARGET_STEMS
from ..markdown import markdown_table
from . import CRITERIA, SCALE, SYSTEMS
from .export import study_rows

REPORT_FOLDER = "report"
CONFIDENCE = 0.95


def _number(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def bootstrap_mean(values, items, resamples: int = 2000, seed: int = 0) -> dict:
    """{"mean", "low", "high", "n"}: the mean of `values` with a 95 % percentile bootstrap interval over the `items`
    they belong to (each resample draws items with replacement and averages all their values); no interval from
    fewer than two items."""
    values, items = np.asarray(values, dtype=float), np.asarray(items)
    if not len(values):
        return {"mean": None, "low": None, "high": None, "n": 0}
    groups, index = np.unique(items, return_inverse=True)
    sums, counts = np.bincount(index, weights=values), np.bincount(index).astype(float)
    low = high = None
    if len(groups) >= 2:
        draws = np.random.default_rng(seed).integers(0, len(groups), (resamples, len(groups)))  # [resamples, items]
        means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
        low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return {"mean": float(values.mean()), "low": _number(low), "high": _number(high), "n": int(len(values))}


def criterion_means(rows: list[dict], resamples: int, seed: int) -> dict:
    """{system: {criterion: `bootstrap_mean`}} of rated rows, systems in `SYSTEMS` order."""
    systems = [s for s in SYSTEMS if any(row["system"] == s for row in rows)]
    return {
        system: {
            name: bootstrap_mean([r[name] for r in rows if r["system"] == system],
                                 [r["item_id"] for r in rows if r["system"] == system], resamples, seed)
            for name in CRITERIA
        }
        for system in systems
    }


def agreement(rows: list[dict]) -> dict:
    """Krippendorff's alpha (ordinal, 1-7) per criterion over the participants; a unit is one answer of one item.

    Alpha needs two participants who rated the same answer, and some spread in the ratings; otherwise it is None and
    `note` says why."""
    raters = sorted({row["participant"] for row in rows})
    units = sorted({(row["item_id"], row["system"]) for row in rows})
    per_unit = Counter((row["item_id"], row["system"]) for row in rows)
    shared = sum(1 for n in per_unit.values() if n >= 2)
    result = {"raters": len(raters), "units": len(units), "units_rated_twice": shared, "note": None,
              "alpha": dict.fromkeys(CRITERIA)}
    if len(raters) < 2 or not shared:
        result["note"] = "too few raters: alpha needs two participants who rated the same answer"
        return result
    column = {unit: j for j, unit in enumerate(units)}
    row_of = {code: i for i, code in enumerate(raters)}
    for name in CRITERIA:
        data = np.full((len(raters), len(units)), np.nan)  # [raters, units]
        for row in rows:
            data[row_of[row["participant"]], column[row["item_id"], row["system"]]] = row[name]
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            alpha = krippendorff.alpha(data, value_domain=list(SCALE), level_of_measurement="ordinal")
        result["alpha"][name] = _number(alpha)
    if any(value is None for value in result["alpha"].values()):
        result["note"] = "alpha is undefined for a criterion whose shared answers got one and the same rating"
    return result


def preference(rows: list[dict], resamples: int, seed: int) -> dict | None:
    """The A/B choices: per system how often it was preferred, and the share of choices for "model" with its
    bootstrap interval over items. None when no item had two answers."""
    responses = {(row["participant"], row["item_id"]): row for row in rows if not row["skipped"]}
    pairs = Counter((row["participant"], row["item_id"]) for row in rows if not row["skipped"])
    compared = [responses[key] for key, n in pairs.items() if n == 2]
    if not compared:
        return None
    chosen = [row for row in compared if row["preferred"] is not None]
    share = bootstrap_mean([row["preferred"] == "model" for row in chosen], [row["item_id"] for row in chosen],
                           resamples, seed)
    return {"compared": len(compared), "no_choice": len(compared) - len(chosen),
            "counts": dict(Counter(row["preferred"] for row in chosen)), "model_share": share}


def parser_relation(rows: list[dict]) -> dict:
    """Per criterion: the mean rating of answers the parser found correct and of those it found wrong, and the
    point-biserial and Spearman correlations of rating and correctness (None without both kinds of answers)."""
    known = [row for row in rows if row["correct"] is not None]
    result = {}
    for name in CRITERIA:
        ratings = np.array([row[name] for row in known], dtype=float)
        correct = np.array([row["correct"] for row in known], dtype=bool)
        entry = {
            group: {"mean": _number(ratings[mask].mean()) if mask.any() else None, "n": int(mask.sum())}
            for group, mask in (("correct", correct), ("incorrect", ~correct))
        }
        both = correct.any() and (~correct).any() and np.ptp(ratings) > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            biserial = stats.pointbiserialr(correct, ratings) if both else None
            spearman = stats.spearmanr(correct, ratings) if both else None
        entry["point_biserial"] = {"r": _number(biserial.statistic), "p": _number(biserial.pvalue)} if both else None
        entry["spearman"] = {"rho": _number(spearman.statistic), "p": _number(spearman.pvalue)} if both else None
        result[name] = entry
    return result


def _grouped(rows: list[dict], key, order, resamples: int, seed: int) -> dict:
    """`criterion_means` per group (`key(row)`) that has ratings, in the order of `order`."""
    groups = [group for group in order if any(key(row) == group for row in rows)]
    return {group: criterion_means([r for r in rows if key(r) == group], resamples, seed) for group in groups}


def compute_report(study: dict, rows: list[dict], seed: int = 0, resamples: int = 2000) -> dict:
    """The report (see `study_report`) of a study and its `study_rows`."""
    rated = [row for row in rows if not row["skipped"]]
    return {
        "study": {key: study.get(key) for key in ("model", "second_model", "reference", "dataset", "split", "seed")}
        | {"items": len(study["items"])},
        "settings": {"seed": seed, "resamples": resamples, "confidence": CONFIDENCE,
                     "interval": "percentile bootstrap over items"},
        "counts": {"participants": len({row["participant"] for row in rows}),
                   "responses": len({(row["participant"], row["item_id"]) for row in rows}),
                   "skipped": sum(row["skipped"] for row in rows), "ratings": len(rated)},
        "means": criterion_means(rated, resamples, seed),
        "by_category": _grouped(rated, lambda row: row["error_category"], CATEGORIES, resamples, seed),
        "by_target_stem": _grouped(rated, lambda row: "none" if row["error_category"] == "no_error"
                                   else row["target_stem"], (*TARGET_STEMS, "none"), resamples, seed),
        "agreement": agreement(rated),
        "preference": preference(rows, resamples, seed),
        "parser": parser_relation(rated),
    }


def _cell(entry: dict) -> str:
    if entry["mean"] is None:
        return "–"
    interval = f" [{entry['low']:.2f}, {entry['high']:.2f}]" if entry["low"] is not None else ""
    return f"{entry['mean']:.2f}{interval} (n={entry['n']})"


def _means_table(means: dict, label: str = "system") -> str:
    rows = [[system, *(_cell(m[c]) for c in CRITERIA)] for system, m in means.items()]
    return markdown_table([label, *CRITERIA], rows)


def _grouped_table(grouped: dict, label: str) -> str:
    rows = [[group, system, *(_cell(m[c]) for c in CRITERIA)]
            for group, means in grouped.items() for system, m in means.items()]
    return markdown_table([label, "system", *CRITERIA], rows)


def _optional(value, form: str = "{:.2f}") -> str:
    return "–" if value is None else form.format(value)


def report_markdown(report: dict) -> str:
    """The report as markdown: counts, the tables of means, agreement, preference and the parser's relation."""
    counts, agree, pref = report["counts"], report["agreement"], report["preference"]
    lines = [
        "# Listening study report",
        "",
        f"Model `{report['study']['model']}`, {report['study']['items']} items; {counts['participants']} participants, "
        f"{counts['ratings']} ratings, {counts['skipped']} skipped items. Means on 1-7 with 95 % intervals "
        f"({report['settings']['interval']}, {report['settings']['resamples']} resamples, seed "
        f"{report['settings']['seed']}).",
        "",
        "## Means per system",
        "",
        _means_table(report["means"]),
        "",
        "## Per error category",
        "",
        _grouped_table(report["by_category"], "category"),
        "",
        "## Per target stem",
        "",
        _grouped_table(report["by_target_stem"], "target stem"),
        "",
        "## Inter-rater agreement (Krippendorff's alpha, ordinal)",
        "",
        markdown_table(["criterion", "alpha"], [[c, _optional(a, "{:.3f}")] for c, a in agree["alpha"].items()]),
        "",
        f"{agree['raters']} raters, {agree['units']} rated answers, {agree['units_rated_twice']} rated by two or more."
        + (f" Note: {agree['note']}." if agree["note"] else ""),
        "",
        "## A/B preference",
        "",
    ]
    if pref is None:
        lines.append("No item compared two answers.")
    else:
        share = pref["model_share"]
        lines.append(
            f"{pref['compared']} comparisons, {pref['no_choice']} without a choice; choices: "
            + ", ".join(f"{system} {n}" for system, n in sorted(pref["counts"].items()))
            + f". Share for the model: {_optional(share['mean'], '{:.1%}')} [{_optional(share['low'], '{:.1%}')}, "
            f"{_optional(share['high'], '{:.1%}')}]."
        )
    lines += ["", "## Ratings and the parser's correctness", ""]
    rows = []
    for name, entry in report["parser"].items():
        biserial, spearman = entry["point_biserial"] or {}, entry["spearman"] or {}
        rows.append([name, _optional(entry["correct"]["mean"]) + f" (n={entry['correct']['n']})",
                     _optional(entry["incorrect"]["mean"]) + f" (n={entry['incorrect']['n']})",
                     _optional(biserial.get("r")), _optional(biserial.get("p"), "{:.3g}"),
                     _optional(spearman.get("rho")), _optional(spearman.get("p"), "{:.3g}")])
    lines.append(markdown_table(["criterion", "mean if correct", "mean if wrong", "point-biserial r", "p",
                                 "Spearman rho", "p"], rows))
    return "\n".join(lines) + "\n"


def plot_means(report: dict, path: Path) -> None:
    """report.png: per criterion, the mean of each system overall and per error category, with 95 % intervals."""
    groups = {"all": report["means"], **report["by_category"]}
    systems = list(report["means"])
    figure = Figure(figsize=(5 * len(CRITERIA), 4), layout="tight")  # no pyplot: no global state, any thread
    axes = figure.subplots(1, len(CRITERIA), sharey=True)
    width = 0.8 / max(len(systems), 1)
    for axis, name in zip(axes, CRITERIA):
        for k, system in enumerate(systems):
            entries = [groups[g].get(system, {}).get(name, {"mean": None}) for g in groups]
            x = np.arange(len(groups)) + (k - (len(systems) - 1) / 2) * width
            means = np.array([e["mean"] if e["mean"] is not None else np.nan for e in entries])
            errors = np.array([[e["mean"] - e["low"], e["high"] - e["mean"]] if e.get("low") is not None
                               else [np.nan, np.nan] for e in entries]).T  # [2, groups]; NaN draws no bar
            axis.bar(x, means, width, yerr=errors, capsize=3, label=system)
        axis.set_xticks(np.arange(len(groups)), list(groups), rotation=30, ha="right")
        axis.set_title(name)
        axis.set_ylim(1, 7)
    axes[0].set_ylabel("mean rating (1-7), 95 % interval")
    axes[0].legend()
    figure.savefig(path, dpi=120)


def study_report(study_dir: str | Path, out: str | Path | None = None, seed: int = 0, resamples: int = 2000) -> dict:
    """Compute the report of a study's ratings and write `report.json`, `report.md` and `report.png` to `out` (default
    `STUDY_DIR/report`), replacing an earlier report there. Returns the report:

    `study`, `settings`, `counts`; `means` {system: {criterion: {mean, low, high, n}}}; `by_category` and
    `by_target_stem` {group: means}; `agreement` {raters, units, units_rated_twice, note, alpha: {criterion}};
    `preference` (None without A/B items) {compared, no_choice, counts, model_share: {mean, low, high, n}}; `parser`
    {criterion: {correct: {mean, n}, incorrect: {mean, n}, point_biserial: {r, p}, spearman: {rho, p}}}.
    """
    if resamples < 1:
        raise ValueError(f"--resamples must be at least 1, got {resamples}.")
    study, rows = study_rows(study_dir)
    report = compute_report(study, rows, seed, resamples)
    out = Path(out) if out is not None else Path(study_dir) / REPORT_FOLDER
    with atomic_folder(out, overwrite=True, kind="study-report") as staging:
        (staging / "report.json").write_text(json.dumps(report, indent=2))
        (staging / "report.md").write_text(report_markdown(report))
        plot_means(report, staging / "report.png")
    return report
