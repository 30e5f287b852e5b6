"""Which 10 s chunks of a track are usable: loud enough overall, every stem audible, and active most of the time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .levels import rms_db


@dataclass(frozen=True)
class GatingThresholds:
    """The authors' gating: mixture RMS >= -35 dBFS, every stem RMS >= -45 dBFS, >= 20 % of 50 ms frames active."""

    mixture_min_rms_db: float = -35.0
    stem_min_rms_db: float = -45.0
    frame_active_rms_db: float = -45.0  # a frame of the mixture is active above this RMS
    min_active_fraction: float = 0.2
    frame_seconds: float = 0.05


@dataclass
class GatingStats:
    """Chunk counts (a gated-out chunk counts under every criterion it fails) and tracks shorter than one chunk."""

    chunks: int = 0
    kept: int = 0
    quiet_mixture: int = 0
    quiet_stem: int = 0
    too_few_active_frames: int = 0
    short_tracks: int = 0

    @property
    def gated_out(self) -> int:
        return self.chunks - self.kept

    def __add__(self, other: GatingStats) -> GatingStats:
        return GatingStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "gated_out": self.gated_out}


def audible_mixture(
    mixture: np.ndarray, sampling_rate: int, thresholds: GatingThresholds
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk of `mixture` [chunks, samples]: (loud enough, active in enough 50 ms frames), as boolean arrays."""
    frame_len = round(thresholds.frame_seconds * sampling_rate)
    n_chunks, chunk_len = mixture.shape
    frames = mixture[:, : (chunk_len // frame_len) * frame_len].reshape(n_chunks, -1, frame_len)
    loud = rms_db(mixture) >= thresholds.mixture_min_rms_db  # [n_chunks]
    active = (rms_db(frames) > thresholds.frame_active_rms_db).mean(axis=-1) >= thresholds.min_active_fraction
    return loud, active


def gate_chunks(
    stems: np.ndarray, sampling_rate: int, chunk_seconds: float, thresholds: GatingThresholds
) -> tuple[list[int], GatingStats]:
    """Indices of the non-overlapping chunks of `stems` [n_stems, samples] that pass, and the counts.

    The mixture is the sum of the stems; a final partial chunk is dropped, and a track shorter than one chunk is
    skipped (counted in `short_tracks`).
    """
    chunk_len = round(chunk_seconds * sampling_rate)
    n_stems, n_chunks = stems.shape[0], stems.shape[1] // chunk_len
    if n_chunks == 0:
        return [], GatingStats(short_tracks=1)
    chunks = np.asarray(stems[:, : n_chunks * chunk_len]).reshape(n_stems, n_chunks, chunk_len)
    loud_mixture, active = audible_mixture(chunks.sum(axis=0), sampling_rate, thresholds)
    loud_stems = (rms_db(chunks) >= thresholds.stem_min_rms_db).all(axis=0)  # [n_chunks]
    kept = loud_mixture & loud_stems & active
    stats = GatingStats(
        chunks=n_chunks,
        kept=int(kept.sum()),
        quiet_mixture=int((~loud_mixture).sum()),
        quiet_stem=int((~loud_stems).sum()),
        too_few_active_frames=int((~active).sum()),
    )
    return np.flatnonzero(kept).tolist(), stats
