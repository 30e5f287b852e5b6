"""The evaluation report: markdown tables (the paper's Tables I–IV), confusion plots and the report folder."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..files import write_file_atomic
from ..hub.vocabulary_mixingbuddy import ADVICE_CLASSES, CATEGORIES, FLAWED_CATEGORIES
from ..markdown import markdown_table
from .scoring import DETECTION_TASKS, DIRECTIONS, PREDICTED_CLASSES, advice_label, graded, score_predictions


# ---------------------------------------------------------------------------------------------
# Markdown tables
# ---------------------------------------------------------------------------------------------


def _percent(value: float, n: int) -> str:
    return f"{100 * value:.2f} %" if n else "—"


def _accuracy_row(summary: dict) -> list:
    n, n_error = summary["n"], summary["n_error"]
    accuracies = [_percent(summary[f"{key}_accuracy"], n) for key in ("joint", "stem", "direction")]
    similarity = [f"{summary['semantic_similarity']:.3f}" if n else "—"] if "semantic_similarity" in summary else []
    return [n, *accuracies, _percent(summary["magnitude_accuracy"], n_error), *similarity]


def metrics_markdown(metrics: Mapping) -> str:
    """The metrics as markdown: overall, Table I (detection), Tables II–IV (by category, stem and direction), with a
    column of mean semantic similarity when the answers were scored for it."""
    overall = metrics["overall"]
    accuracy_header = ["N", "Joint", "Stem", "Direction", "Magnitude"]
    if "semantic_similarity" in overall:
        accuracy_header.append("Semantic similarity")
    sections = [
        "## Overall",
        markdown_table(
            [*accuracy_header, "Error rows", "Unparseable", "Impossible"],
            [[*_accuracy_row(overall), overall["n_error"], _percent(overall["unparseable_share"], overall["n"]),
              _percent(overall["impossible_share"], overall["n"])]],
        ),
        "## Table I — detection",
        markdown_table(
            ["Task", "TP", "FP", "FN", "TN", "Precision", "Recall", "F1"],
            [
                [task.replace("_", " "), *(metrics[task][c] for c in ("tp", "fp", "fn", "tn")),
                 *(_percent(metrics[task][k], 1) for k in ("precision", "recall", "f1"))]
                for task in DETECTION_TASKS
            ],
        ),
    ]
    for title, key, label in (
        ("Table II — by error category", "by_category", "Category"),
        ("Table III — by target stem", "by_stem", "Stem"),
        ("Table IV — by direction", "by_direction", "Direction"),
    ):
        rows = [[group.replace("_", " "), *_accuracy_row(summary)] for group, summary in metrics[key].items()]
        sections += [f"## {title}", markdown_table([label, *accuracy_header], rows)]
    return "\n\n".join(sections) + "\n"


# ---------------------------------------------------------------------------------------------
# Confusion matrices
# ---------------------------------------------------------------------------------------------


def _count_matrix(pairs: Iterable[tuple[str, str]], rows: tuple, columns: tuple) -> np.ndarray:
    counts = np.zeros((len(rows), len(columns)), dtype=np.int64)
    for row, column in pairs:
        counts[rows.index(row), columns.index(column)] += 1
    return counts


def _readable(label: str) -> str:
    return label.replace(":", " · ").replace("_", " ")


def _confusion_figure(
    counts: np.ndarray, rows: tuple, columns: tuple, title: str, xlabel: str, ylabel: str, separators: tuple = ()
) -> Figure:
    """A heat map coloured by each row's share, with the counts in the cells and lines between blocks of classes."""
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(max(5.0, 1.5 + 0.6 * len(columns)), 1.8 + 0.5 * len(rows)), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), count in np.ndenumerate(counts):
        axes.text(j, i, str(count), ha="center", va="center", fontsize=8,
                  color="white" if shares[i, j] > 0.5 else ("black" if count else "lightgray"))
    axes.set_xticks(range(len(columns)), [_readable(c) for c in columns], rotation=45, ha="right")
    axes.set_yticks(range(len(rows)), [_readable(r) for r in rows])
    for position in separators:
        axes.axhline(position - 0.5, color="gray", linewidth=0.8)
        axes.axvline(position - 0.5, color="gray", linewidth=0.8)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    figure.colorbar(image, ax=axes, label="share of the true row")
    return figure


def plot_confusions(records: Iterable[Mapping], out_dir: str | os.PathLike) -> list[Path]:
    """Write `confusion_advice.png` (true class vs predicted class, `PREDICTED_CLASSES`) and
    `confusion_direction.png` (true category vs predicted direction) into `out_dir`; return their paths."""
    grades = graded(records)
    advice = _count_matrix(
        ((advice_label(g["truth"]), advice_label(g["parsed"])) for g in grades), ADVICE_CLASSES, PREDICTED_CLASSES
    )
    direction_columns = DIRECTIONS + ("unparseable",)
    direction = _count_matrix(
        ((g["category"], g["parsed"]["direction"] or "unparseable") for g in grades), tuple(CATEGORIES), direction_columns
    )
    figures = {
        "confusion_advice.png": _confusion_figure(
            advice, ADVICE_CLASSES, PREDICTED_CLASSES, "Advice class", "predicted (stem · category)",
            "true (stem · category)", separators=tuple(range(1, len(ADVICE_CLASSES) + 1, len(FLAWED_CATEGORIES))),
        ),
        "confusion_direction.png": _confusion_figure(
            direction, tuple(CATEGORIES), direction_columns, "Direction by error category", "predicted direction",
            "true error category",
        ),
    }
    paths = []
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120)
        paths.append(write_file_atomic(Path(out_dir) / name, buffer.getvalue()))
    return paths


# ---------------------------------------------------------------------------------------------
# The report folder
# ---------------------------------------------------------------------------------------------


def jsonl_line(record: Mapping) -> str:
    """One line of a JSON-lines file (`predictions.jsonl`, the judge's `judgments.jsonl`)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def read_whole_lines(path: Path) -> list[dict]:
    """The records of an earlier run's JSON-lines file, whole lines only (a killed run may have left half a line);
    none when there is no file."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


def write_report(records: Iterable[Mapping], out_dir: str | os.PathLike, run: Mapping | None = None) -> dict:
    """Write `predictions.jsonl` (the records, e.g. from `prediction_record`), `metrics.json`, `metrics.md` and the
    confusion PNGs into `out_dir`; return the metrics. `run` (what was evaluated: model, data set, split, decoding,
    rows, version) is recorded in `metrics.json` under "run"."""
    records = list(records)
    out_dir = Path(out_dir)
    metrics = score_predictions(records)
    write_file_atomic(out_dir / "predictions.jsonl", "".join(map(jsonl_line, records)))
    recorded = metrics if run is None else {**metrics, "run": dict(run)}
    write_file_atomic(out_dir / "metrics.json", json.dumps(recorded, indent=2) + "\n")
    write_file_atomic(out_dir / "metrics.md", metrics_markdown(metrics))
    plot_confusions(records, out_dir)
    return metrics
