"""A MUSDB18HQ-layout stem folder: `train/<track>/{bass,drums,other,vocals}.wav` and `test/<track>/...`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from mixingbuddy.files import error_summary
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

from .seeding import keyed_rng

SOURCE_SPLITS = ("train", "test")
# MUSDB18's standard validation tracks, held out of its train folder.
MUSDB_VALIDATION_TRACKS = (
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
)


class CorpusError(ValueError):
    """A stem folder that cannot be used; the message names the track and the file."""


@dataclass(frozen=True)
class Track:
    """One song of the corpus: its name, the folder it came from (`train` or `test`) and its stem files."""

    name: str
    source_split: str
    folder: Path

    def stem_path(self, stem: str) -> Path:
        return self.folder / f"{stem}.wav"

    def fingerprint(self) -> str:
        """Short hash of the stem files' names, sizes and modification times: changes when a file changes."""
        digest = hashlib.sha256()
        for stem in STEMS:
            status = self.stem_path(stem).stat()
            digest.update(f"{stem}:{status.st_size}:{status.st_mtime_ns};".encode())
        return digest.hexdigest()[:16]

    def content_fingerprint(self) -> dict[str, str]:
        """Per stem, the file's size and a hash of 16 blocks spread over it, start and end included: what the audio
        is, whatever the file's path or modification time (a copied corpus keeps its fingerprint)."""
        return {stem: sampled_file_hash(self.stem_path(stem)) for stem in STEMS}

    def validate(self) -> None:
        """Check from the file headers that every stem is present, readable, non-empty and of the same duration."""
        durations = {}
        for stem in STEMS:
            path = self.stem_path(stem)
            if not path.is_file():
                raise CorpusError(f"Track '{self.name}': missing stem file {path}")
            try:
                info = sf.info(str(path))
            except (sf.SoundFileError, OSError) as err:
                raise CorpusError(f"Track '{self.name}': cannot read {path}: {error_summary(err)}") from None
            if info.frames == 0:
                raise CorpusError(f"Track '{self.name}': {path} is empty (0 samples)")
            durations[stem] = (info.frames / info.samplerate, 1 / info.samplerate)
        shortest, longest = min(durations, key=lambda s: durations[s][0]), max(durations, key=lambda s: durations[s][0])
        if durations[longest][0] - durations[shortest][0] > max(durations[shortest][1], durations[longest][1]):
            raise CorpusError(
                f"Track '{self.name}': stems have different lengths: {self.stem_path(shortest)} lasts "
                f"{durations[shortest][0]:.3f} s but {self.stem_path(longest)} lasts {durations[longest][0]:.3f} s"
            )


def find_tracks(stems_dir: str | Path) -> dict[str, Track]:
    """All tracks of a MUSDB18HQ-layout folder by name (cheap: lists folders, reads no audio).

    One of `train/` and `test/` may be missing or empty (a held-out set to evaluate on needs only `test/`); the
    builder then leaves out the splits that have no tracks.
    """
    root = Path(stems_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Stem folder {root} does not exist (expected {root}/train/<track>/bass.wav, ...)")
    tracks = {}
    for source_split in SOURCE_SPLITS:
        split_dir = root / source_split
        listed = split_dir.iterdir() if split_dir.is_dir() else ()
        for folder in sorted(p for p in listed if p.is_dir() and not p.name.startswith(".")):
            if folder.name in tracks:
                raise CorpusError(f"Track '{folder.name}' appears in both {tracks[folder.name].folder} and {folder}")
            tracks[folder.name] = Track(folder.name, source_split, folder)
    if not tracks:
        raise CorpusError(
            f"Stem folder {root} has no track folders in train/ or test/ (MUSDB18HQ layout expected: "
            f"{root}/test/<track>/bass.wav, ...)"
        )
    return tracks


def sampled_file_hash(path: Path, blocks: int = 16, block_size: int = 16384) -> str:
    """`"<size>:<sha256 of `blocks` evenly spaced blocks of the file>"`: a cheap content fingerprint."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for offset in sorted({round(i * max(size - block_size, 0) / (blocks - 1)) for i in range(blocks)}):
            file.seek(offset)
            digest.update(file.read(block_size))
    return f"{size}:{digest.hexdigest()[:32]}"


def corpus_fingerprint(tracks: dict[str, Track]) -> str:
    """Short hash of every track's name and stem-file fingerprint."""
    return hashlib.sha256(";".join(f"{n}:{tracks[n].fingerprint()}" for n in sorted(tracks)).encode()).hexdigest()[:16]


def assign_splits(tracks: dict[str, Track], seed: int, validation_fraction: float) -> dict[str, list[str]]:
    """Track names per output split (train, validation, test), each sorted; validation holds whole train tracks.

    Validation is MUSDB's standard 14 tracks when any of them are present, otherwise a seeded fraction of train.
    """
    train = sorted(name for name, track in tracks.items() if track.source_split == "train")
    test = sorted(name for name, track in tracks.items() if track.source_split == "test")
    validation = [name for name in train if name in MUSDB_VALIDATION_TRACKS]
    if not validation and validation_fraction > 0 and len(train) > 1:
        count = min(len(train) - 1, max(1, round(validation_fraction * len(train))))
        rng = keyed_rng(seed, "validation")
        validation = sorted(rng.choice(train, size=count, replace=False).tolist())
    return {"train": [n for n in train if n not in validation], "validation": validation, "test": test}

