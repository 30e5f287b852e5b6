"""The stems of a corpus as mono 16-bit samples at the model's rate, and flawed mixes rendered from them.

A track whose stems are already mono 16-bit PCM WAV files at the model's rate is read in place (memory-mapped): nothing
is written. Any other track is decoded, downmixed and resampled once into a cache entry, one int16 `.npy` per track, at
`<root>/<short hash of the resolved stems folder>/<track>/sr<rate>-v<format>-<fingerprint>.npy`, where the root is the
`cache_dir` argument, else `$MIXINGBUDDY_CACHE_DIR`, else `~/.cache/mixingbuddy/stems`. The fingerprint hashes the size
and modification time of the track's stem files, so editing a file makes a new entry (the stale one is deleted when
the new one is written). Entries are written to a temporary file and renamed into place.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numba
import numpy as np
import soundfile as sf
import soxr

from mixingbuddy.files import error_summary, write_file_atomic
from mixingbuddy.hub.processing_mixingbuddy import downmix
from mixingbuddy.hub.vocabulary_mixingbuddy import MIX_CLIP, STEMS

from .corpus import CorpusError, Track, find_tracks
from .levels import db_to_gain
from .rows import as_row

CACHE_ENV = "MIXINGBUDDY_CACHE_DIR"
DEFAULT_CACHE_ROOT = "~/.cache/mixingbuddy/stems"
CACHE_FORMAT = 2  # int16 samples (format 1 held float32)
PCM_SCALE = 32768.0  # int16 sample -> float in [-1, 1)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else `$MIXINGBUDDY_CACHE_DIR`, else `~/.cache/mixingbuddy/stems`."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT).expanduser().resolve()


def stem_cache_dir(stems_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The cache folder of one stems folder: `<cache root>/<short hash of the resolved stems folder>`."""
    resolved = str(Path(stems_dir).expanduser().resolve())
    return cache_root(cache_dir) / hashlib.sha256(resolved.encode()).hexdigest()[:12]


def to_mono(audio: np.ndarray, rate: int, sampling_rate: int) -> np.ndarray:
    """[frames, channels] audio at `rate` -> float32 mono [samples] at `sampling_rate` (soxr HQ)."""
    mono = downmix(audio, channel_axis=1)
    if rate != sampling_rate:
        mono = soxr.resample(mono, rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def decode_mono(path: Path, sampling_rate: int) -> np.ndarray:
    """Any-rate, any-channel audio file -> float32 mono [samples] at `sampling_rate`."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [frames, channels]
    return to_mono(audio, rate, sampling_rate)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples -> int16, rounded and clipped to the 16-bit range."""
    return np.clip(np.rint(audio * PCM_SCALE), -32768, 32767).astype(np.int16)


def pcm16_samples(path: Path, sampling_rate: int) -> np.ndarray | None:
    """A read-only memory map of the samples of a mono 16-bit PCM WAV file at `sampling_rate`, or None when the file
    is anything else (so it has to be decoded)."""
    info = sf.info(str(path))
    if (info.format, info.subtype, info.channels, info.samplerate) != ("WAV", "PCM_16", 1, sampling_rate):
        return None
    with open(path, "rb") as file:  # find the RIFF "data" chunk
        file.seek(12)
        while len(header := file.read(8)) == 8:
            size = int.from_bytes(header[4:], "little")
            if header[:4] == b"data":
                return np.memmap(path, dtype="<i2", mode="r", offset=file.tell(), shape=(info.frames,))
            file.seek(size + size % 2, 1)
    return None


class StemCache:
    """Stems of a MUSDB18HQ-layout folder as mono int16 samples at `sampling_rate`, memory-mapped once per track: the
    WAV files themselves when they are in that form, otherwise a cache entry created on first use (decode, downmix,
    resample). Rendering a chunk is then a slice and a weighted sum.
    """

    def __init__(self, stems_dir: str | Path, sampling_rate: int = 24000, cache_dir: str | Path | None = None):
        self.stems_dir = Path(stems_dir).expanduser().resolve()
        self.sampling_rate = sampling_rate
        self.directory = stem_cache_dir(self.stems_dir, cache_dir)
        self._tracks: dict[str, Track] | None = None
        self._arrays: dict[str, list[np.ndarray]] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}  # workers re-open the memory maps instead of copying arrays

    @property
    def tracks(self) -> dict[str, Track]:
        if self._tracks is None:
            self._tracks = find_tracks(self.stems_dir)
        return self._tracks

    def track(self, name: str) -> Track:
        if name not in self.tracks:
            raise KeyError(f"Track '{name}' is not in {self.stems_dir}")
        return self.tracks[name]

    def entry_path(self, name: str) -> Path:
        track = self.track(name)
        return self.directory / name / f"sr{self.sampling_rate}-v{CACHE_FORMAT}-{track.fingerprint()}.npy"

    def in_place(self, name: str) -> list[np.ndarray] | None:
        """The track's stems read in place (one memory map per WAV), or None when they need a cache entry."""
        track = self.track(name)
        track.validate()
        stems = [pcm16_samples(track.stem_path(stem), self.sampling_rate) for stem in STEMS]
        return stems if all(s is not None for s in stems) and len({len(s) for s in stems}) == 1 else None

    def ensure(self, name: str) -> Path:
        """The track's cache entry, decoded and written first if it is missing or stale."""
        path = self.entry_path(name)
        if not path.exists():
            stems = self._decode(self.track(name))
            write_file_atomic(path, lambda file: np.save(file, stems))
            for stale in path.parent.glob(f"sr{self.sampling_rate}-*.npy"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        return path

    def samples(self, name: str) -> list[np.ndarray]:
        """The track's stems, one read-only int16 [samples] array per stem of `STEMS` (kept for later calls)."""
        if name not in self._arrays:
            stems = self.in_place(name)
            self._arrays[name] = stems if stems is not None else list(np.load(self.ensure(name), mmap_mode="r"))
        return self._arrays[name]

    def load(self, name: str) -> np.ndarray:
        """The whole track's stems, float32 [len(STEMS), samples] in [-1, 1)."""
        return np.stack(self.samples(name)).astype(np.float32) / np.float32(PCM_SCALE)

    def chunk(self, name: str, start_sec: float, end_sec: float) -> np.ndarray:
        """The stems between two times, float32 [len(STEMS), samples] in [-1, 1)."""
        return np.stack(self.int16_chunk(name, start_sec, end_sec)).astype(np.float32) / np.float32(PCM_SCALE)

    def int16_chunk(self, name: str, start_sec: float, end_sec: float) -> tuple[np.ndarray, ...]:
        """The stems between two times as stored, one read-only int16 [samples] view per stem of `STEMS`."""
        start = round(start_sec * self.sampling_rate)
        stop = start + round((end_sec - start_sec) * self.sampling_rate)
        return tuple(np.asarray(s[start:stop]) for s in self.samples(name))

    def render(self, example) -> np.ndarray:
        """The flawed mix of a data-set row (in any form `as_row` reads), float32 [samples]: the stems present, the
        target scaled by 10^(gain/20)."""
        return self.render_clips(example, (MIX_CLIP,))[0]

    def render_clips(self, example, clips, moves_db: dict[str, float] | None = None) -> list[np.ndarray]:
        """Clips of a data-set row's flawed mix, float32 [samples] each: `MIX_CLIP` is the mix (`render`), a stem name
        that stem as the mix holds it (the target scaled by its gain; silent when the row's stems leave it out), so
        that the stems' clips add up to the mix. `moves_db` moves the stems it names by that many dB in every clip,
        before the flaw: a balance of the song other than its own, which the row's advice does not answer for."""
        row = as_row(example)
        weights = stem_weights(row, row["gain_db"], moves_db) / np.float32(PCM_SCALE)  # [len(STEMS)]
        stems = self.int16_chunk(row["track"], row["start_sec"], row["end_sec"])
        return [
            weighted_sum(stems, weights, np.empty(len(stems[0]), dtype=np.float32)) if clip == MIX_CLIP
            else stems[STEMS.index(clip)] * weights[STEMS.index(clip)]
            for clip in clips
        ]

    def _decode(self, track: Track) -> np.ndarray:
        track.validate()
        stems = []
        for stem in STEMS:
            path = track.stem_path(stem)
            try:
                mono = decode_mono(path, self.sampling_rate)
            except (sf.SoundFileError, OSError) as err:
                raise CorpusError(f"Track '{track.name}': cannot decode {path}: {error_summary(err)}") from None
            if not np.isfinite(mono).all():
                raise CorpusError(f"Track '{track.name}': {path} contains NaN or infinite samples")
            stems.append(mono)
        length = min(len(s) for s in stems)  # validated durations agree to a sample; resampling may round apart
        return to_pcm16(np.stack([s[:length] for s in stems]))  # [len(STEMS), samples]


@numba.njit(cache=True, nogil=True)
def weighted_sum(stems, weights, out):
    """out[i] = sum over k of weights[k] * stems[k][i], in one pass (numpy would convert each int16 stem to float32
    first and then sum: five passes over memory). stems: a tuple of int16 [samples]; weights: float32 [len(stems)]."""
    for i in range(out.shape[0]):
        total = np.float32(0.0)
        for k in range(len(stems)):
            total += weights[k] * np.float32(stems[k][i])
        out[i] = total
    return out


@functools.lru_cache(maxsize=8)
def _shared_cache(stems_dir: Path, sampling_rate: int, root: Path) -> StemCache:
    return StemCache(stems_dir, sampling_rate, root)


def stem_weights(row: dict, gain_db: float, moves_db: dict[str, float] | None = None, dtype=np.float32) -> np.ndarray:
    """[len(STEMS)] the gain of each stem in a row's flawed mix: 0 for a stem the row leaves out, the target's
    `gain_db`, and the moves of `moves_db` (dB per stem name) on top."""
    present = row.get("stems_present") or STEMS
    weights = np.array([float(stem in present) for stem in STEMS], dtype=dtype)
    weights[STEMS.index(row["target_stem"])] *= dtype(db_to_gain(gain_db))
    for stem, move_db in (moves_db or {}).items():
        weights[STEMS.index(stem)] *= dtype(db_to_gain(move_db))
    return weights


def render_flawed_mix(
    example, stems_dir: str | Path, sampling_rate: int = 24000, cache_dir: str | Path | None = None
) -> np.ndarray:
    """Render a data-set row's flawed mix, float32 mono [samples] at `sampling_rate`, from the stem cache.

    rendered - original == (10^(gain_db/20) - 1) * target, where the original mix is the plain sum of the stems.
    Keeps one `StemCache` per stems folder, so repeated calls only slice memory-mapped arrays.
    """
    return _shared_cache(Path(stems_dir).expanduser().resolve(), sampling_rate, cache_root(cache_dir)).render(example)

