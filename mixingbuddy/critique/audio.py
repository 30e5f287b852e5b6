"""Audio files for the critique: what soundfile reads (WAV, FLAC, OGG, MP3, ...), checked up front and read one window
at a time, so that a long file takes bounded memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..files import error_summary

MIN_SECONDS = 1.0


@dataclass(frozen=True)
class AudioFile:
    """An audio file that can be critiqued: its path, sampling rate, channels and length in frames."""

    path: Path
    rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as float32 [frames, channels]; NaN or infinite samples are an error that names the
        file and the time."""
        try:
            with sf.SoundFile(self.path) as file:
                file.seek(start)
                audio = file.read(stop - start, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:  # a body that fails to decode past a good header
            at = format_time(start / self.rate)
            raise ValueError(f"Cannot decode {self.path} at {at}: {error_summary(err)}") from None
        if not np.isfinite(audio).all():
            at = format_time((start + int(np.flatnonzero(~np.isfinite(audio).all(axis=1))[0])) / self.rate)
            raise ValueError(f"Audio file {self.path} contains NaN or infinite samples (at {at}).")
        return audio


def open_audio(path: str | Path) -> AudioFile:
    """Check that `path` is an audio file of at least one second that soundfile can read; one-line errors otherwise."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an audio file.")
    if not path.is_file():
        raise FileNotFoundError(f"Audio file {path} does not exist.")
    if path.stat().st_size == 0:
        raise ValueError(f"Audio file {path} is empty (0 bytes).")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise ValueError(f"Cannot read {path} as audio: {error_summary(err)}") from None
    if info.frames < MIN_SECONDS * info.samplerate:
        raise ValueError(f"Audio file {path} lasts {info.frames / info.samplerate:.2f} s; at least 1 s is needed.")
    return AudioFile(path, info.samplerate, info.channels, info.frames)


def format_time(seconds: float) -> str:
    """65.3 -> "1:05"."""
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"
