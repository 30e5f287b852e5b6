"""Which stretches of a song the critique judges: windows of the model's clip length every `hop` seconds, covering
the whole song, and the windows too quiet to judge."""

from __future__ import annotations

import math

import numpy as np

from dataset_builder.gating import GatingThresholds, audible_mixture


def window_spans(frames: int, rate: int, clip_seconds: float, hop_seconds: float | None = None) -> list[tuple[int, int]]:
    """[start, stop) frame spans of the windows: one every `hop_seconds` (default: `clip_seconds`, no overlap), each
    `clip_seconds` long; when the song does not end on a window's end, a last window ends exactly at the song's end (it
    overlaps the one before, so that no window is mostly padding). A song shorter than a clip is one window."""
    check_hop(hop_seconds, clip_seconds, rate)
    clip = round(clip_seconds * rate)
    hop = round((clip_seconds if hop_seconds is None else hop_seconds) * rate)
    if frames <= clip:
        return [(0, frames)]
    starts = list(range(0, frames - clip + 1, hop))
    if starts[-1] + clip < frames:
        starts.append(frames - clip)
    return [(start, start + clip) for start in starts]


def check_hop(hop_seconds: float | None, clip_seconds: float | None = None, rate: int | None = None) -> None:
    """Raise `ValueError` unless `hop_seconds` is None or a number of seconds in (0, `clip_seconds`] (any when
    `clip_seconds` is unknown) of at least one frame at `rate` (when known)."""
    shortest = 0.5 / rate if rate else 0  # a hop that rounds to no frame
    if hop_seconds is None or (math.isfinite(hop_seconds) and shortest < hop_seconds <= (clip_seconds or math.inf)):
        return
    bound = f"{clip_seconds:g}" if clip_seconds else "the clip length"
    raise ValueError(f"--hop must lie in (0, {bound}] seconds, so that the windows cover the song; got {hop_seconds}.")


def too_quiet(mono: np.ndarray, rate: int, thresholds: GatingThresholds = GatingThresholds()) -> str | None:
    """Why a window of the mix [samples] cannot be judged — the data set's gating applied to the mix without its DC
    offset, which is not sound — or None."""
    mono = mono.astype(np.float64)
    loud, active = audible_mixture((mono - mono.mean())[None], rate, thresholds)
    if not loud[0]:
        return f"too quiet to judge (mix below {thresholds.mixture_min_rms_db:g} dBFS)"
    if not active[0]:
        return f"too quiet to judge (sound in under {thresholds.min_active_fraction:.0%} of the window)"
    return None
