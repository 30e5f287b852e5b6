"""The critique's timeline: time on x, one lane per stem (and one for balanced and one for skipped windows), each
window coloured by the direction and size of its advice."""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from ..files import write_file_atomic
from ..hub.vocabulary_mixingbuddy import TARGET_STEMS
from .audio import format_time
from .report import CritiqueReport

COLOURS = {  # (direction, large correction)
    ("increase", False): "#9ecae1", ("increase", True): "#2171b5",  # too quiet: blues
    ("decrease", False): "#fcae91", ("decrease", True): "#cb181d",  # too loud: reds
}
BALANCED, SKIPPED = "#74c476", "#bdbdbd"
PNG = b"\x89PNG\r\n\x1a\n"  # how every PNG file starts


def timeline_figure(report: CritiqueReport) -> Figure:
    lanes = [stem for stem in TARGET_STEMS if stem in report["stems"] and stem != report["anchor"]]
    lanes += ["balanced", "too quiet"]
    figure = Figure(figsize=(10, 1.0 + 0.45 * len(lanes)), layout="constrained")
    axes = figure.subplots()
    for window in report["windows"]:
        if window["direction"] == "none":
            lane, colour = "balanced", BALANCED
        elif window["stem"] in lanes and window["direction"] in ("increase", "decrease"):
            lane, colour = window["stem"], COLOURS[window["direction"], (window["max_db"] or 0) > 6]
        else:
            continue
        axes.broken_barh([(window["start"], window["end"] - window["start"])], (lanes.index(lane) - 0.4, 0.8),
                         facecolors=colour, edgecolors="white")
    for window in report["skipped"]:
        axes.broken_barh([(window["start"], window["end"] - window["start"])],
                         (lanes.index("too quiet") - 0.4, 0.8), facecolors=SKIPPED, edgecolors="white")
    axes.set_yticks(range(len(lanes)), lanes)
    axes.set_ylim(len(lanes) - 0.5, -0.5)
    axes.set_xlim(0, report["duration_seconds"])
    axes.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: format_time(seconds)))
    axes.set(xlabel="time", title=f"{Path(report['file']).name}: anchor {report['anchor']}")
    legend = [Patch(color=COLOURS["increase", False], label="too quiet: raise 3–6 dB"),
              Patch(color=COLOURS["increase", True], label="too quiet: raise 6–12 dB"),
              Patch(color=COLOURS["decrease", False], label="too loud: lower 3–6 dB"),
              Patch(color=COLOURS["decrease", True], label="too loud: lower 6–12 dB"),
              Patch(color=BALANCED, label="balanced"), Patch(color=SKIPPED, label="too quiet to judge")]
    figure.legend(handles=legend, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return figure


def write_timeline(report: CritiqueReport, path: str | os.PathLike) -> Path:
    """The timeline as a PNG at `path` (written atomically)."""
    buffer = io.BytesIO()
    timeline_figure(report).savefig(buffer, format="png", dpi=110)
    return write_file_atomic(path, buffer.getvalue())
