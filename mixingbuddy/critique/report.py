"""The critique report's types: what `critique_audio` returns, `critique --json` prints and the page and the plot
read (see the package's docstring for each field)."""

from __future__ import annotations

from typing import TypedDict

from ..hub.vocabulary_mixingbuddy import Advice


class JudgedWindow(Advice):
    """A window the model judged: its span in seconds, the whole answer and its reading."""

    start: float
    end: float
    advice: str


class SkippedWindow(TypedDict):
    """A window too quiet to judge."""

    start: float
    end: float
    reason: str


class Segment(TypedDict):
    """A run of consecutive judged windows with the same advice."""

    start: float
    end: float
    stem: str | None
    direction: str | None
    windows: int


class Summary(TypedDict):
    """The song's verdict, one line per advice (most frequent first) and the runs of agreeing windows."""

    verdict: str
    conclusive: bool
    lines: list[str]
    segments: list[Segment]


class CritiqueReport(TypedDict):
    file: str
    anchor: str
    stems: list[str]
    model: str | None
    decoding: str
    hop_seconds: float
    duration_seconds: float
    audio_inputs: str
    stem_files: dict[str, str]
    windows: list[JudgedWindow]
    skipped: list[SkippedWindow]
    summary: Summary
