"""Which stretches of a song the critique judges: windows of the model's clip length every `hop` seconds, covering
the whole song, and the windows too quiet to judge."""

from __future__ import annotations

import numpy as np

from dataset_builder.gating import GatingThresholds, audible_mixture


def window_spans(frames: int, rate: int, clip_seconds: float, hop_seconds: float | None = None) -> list[tuple[int, int]]:
    """[start, stop) frame spans of the windows: one every `hop_seconds` (default: `clip_seconds`, no overlap), each
    `clip_seconds` long; when the song does not end on a window's end, a last window ends exactly at the song's end (it
    overlaps the one before, so that no window is mostly padding). A song shorter than a clip is one window."""
    clip = round(clip_seconds * rate)
    hop = round((clip_seconds if hop_seconds is None else hop_seconds) * rate)
    if not 0 < hop <= clip:
        raise ValueError(f"--hop must lie in (0, {clip_seconds:g}] seconds, so that the windows cover the song.")
    if frames <= clip:
        return [(0, frames)]
    starts = list(range(0, frames - clip + 1, hop))
    if starts[-1] + clip < frames:
        starts.append(frames - clip)
    return [(start, start + clip) for start in starts]


def too_quiet(mono: np.ndarray, rate: int, thresholds: GatingThresholds = GatingThresholds()) -> str | None:
    """Why a window of the mix [samples] cannot be judged — the data set's gating applied to the mix — or None."""
    loud, active = audible_mixture(mono[None].astype(np.float64), rate, thresholds)
    if not loud[0]:
        return f"too quiet to judge (mix below {thresholds.mixture_min_rms_db:g} dBFS)"
    if not active[0]:
        return f"too quiet to judge (sound in under {thresholds.min_active_fraction:.0%} of the window)"
    return None
