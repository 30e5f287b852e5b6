"""The song's verdict from its windows: runs of windows that agree merged into segments, one line per advice, and
whether they agree enough to conclude."""

from __future__ import annotations

from collections import Counter

from ..hub.vocabulary_mixingbuddy import PLURAL_STEMS
from .audio import format_time
from .report import JudgedWindow, Segment, Summary

AGREEMENT = 0.5  # the most frequent advice must come from at least half the judged windows to be the song's verdict


def advice_key(window: JudgedWindow | Segment) -> tuple[str | None, str | None]:
    """(stem, direction) of a window's advice; (None, "none") for "balanced"."""
    return (None if window["direction"] == "none" else window["stem"]), window["direction"]


def describe(key: tuple, windows: list[JudgedWindow], total: int) -> str:
    """"vocals too quiet in 14 of 22 windows (0:30–3:10): raise them 3–6 dB", or "balanced in 18 of 22 windows"."""
    stem, direction = key
    span = f"{format_time(min(w['start'] for w in windows))}–{format_time(max(w['end'] for w in windows))}"
    counted = f"in {len(windows)} of {total} windows ({span})"
    if direction == "none":
        return f"balanced {counted}"
    if direction not in ("increase", "decrease") or stem is None:
        return f"unclear advice {counted}"
    low, high = Counter((w["min_db"], w["max_db"]) for w in windows).most_common(1)[0][0]
    amount = f" {low:g}–{high:g} dB" if low is not None else ""
    state, verb = ("too quiet", "raise") if direction == "increase" else ("too loud", "lower")
    return f"{stem} {state} {counted}: {verb} {'them' if stem in PLURAL_STEMS else 'it'}{amount}"


def segments(windows: list[JudgedWindow]) -> list[Segment]:
    """Runs of consecutive windows with the same advice, merged: start, end, stem, direction and window count."""
    merged = []
    for window in windows:
        if merged and advice_key(merged[-1]) == advice_key(window):
            merged[-1].update(end=window["end"], windows=merged[-1]["windows"] + 1)
        else:
            stem, direction = advice_key(window)
            merged.append(Segment(start=window["start"], end=window["end"], stem=stem, direction=direction, windows=1))
    return merged


def other_lines(summary: Summary) -> list[str]:
    """The summary's lines beside its verdict: all of them when there is no verdict, else the ones after it."""
    return summary["lines"][1 if summary["conclusive"] else 0 :]


def summarize(windows: list[JudgedWindow]) -> Summary:
    """`{"verdict", "conclusive", "lines", "segments"}` for the judged windows (in time order).

    One line per advice, most frequent first. The verdict is the most frequent advice's line when it comes from at
    least half the judged windows; otherwise the windows disagree too much to conclude."""
    if not windows:
        return Summary(verdict="nothing to judge: every window is too quiet", conclusive=False, lines=[], segments=[])
    groups: dict[tuple, list[dict]] = {}
    for window in windows:
        groups.setdefault(advice_key(window), []).append(window)
    ranked = sorted(groups.items(), key=lambda item: -len(item[1]))
    lines = [describe(key, members, len(windows)) for key, members in ranked]
    conclusive = len(ranked[0][1]) >= AGREEMENT * len(windows)
    verdict = lines[0] if conclusive else "the windows disagree too much to conclude"
    return Summary(verdict=verdict, conclusive=conclusive, lines=lines, segments=segments(windows))
