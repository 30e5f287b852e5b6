"""What the model hears beside the mix (`audio_inputs`): the anchor stem alone ("mix+anchor") or every stem ("stems"),
from stem files that the user gives with the mix. They are checked against the model's setting and against the mix
(the same sampling rate and exactly the same length in frames), and read window by window with it: the same frames of
each file, prepared by the processor as the mix is."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..hub.vocabulary_mixingbuddy import MIX_CLIP, STEMS, TARGET_STEMS, audio_clips, validate_stems
from .audio import AudioFile, open_audio

ANCHOR_AUDIO, STEMS_DIR = "--anchor-audio", "--stems-dir"
STEM_FILE_NAMES = ", ".join(f"{stem}.wav" for stem in STEMS)


@dataclass(frozen=True)
class StemFiles:
    """Stem files given with the mix, by stem name, with how they were given: `option` (`ANCHOR_AUDIO`, `STEMS_DIR`)
    and `where` (the file or folder), which messages name."""

    paths: dict[str, Path]
    option: str
    where: str

    def protected(self) -> dict:
        """The inputs an output file must stay clear of, by name (see `files.check_location`)."""
        files = {f"{stem} stem file": path for stem, path in self.paths.items()}
        return {**files, "stems folder": self.where} if self.option == STEMS_DIR else files


def given_stem_files(anchor: str, anchor_audio=None, stems_dir=None) -> StemFiles | None:
    """The stem files of `--anchor-audio` (the anchor stem's file) or `--stems-dir` (a folder of stem files); giving
    both is refused, so that the anchor the model hears is never ambiguous."""
    if anchor_audio is not None and stems_dir is not None:
        raise ValueError(f"give the anchor stem either with {ANCHOR_AUDIO} or in {STEMS_DIR}, not both.")
    if anchor_audio is not None:
        return StemFiles({anchor: Path(anchor_audio)}, ANCHOR_AUDIO, str(anchor_audio))
    if stems_dir is not None:
        return StemFiles(find_stem_files(stems_dir), STEMS_DIR, str(stems_dir))
    return None


def find_stem_files(folder) -> dict[str, Path]:
    """The stem files of a folder by stem: its files named after a stem (bass.wav, Vocals.flac: any extension
    soundfile reads); other files are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{STEMS_DIR} {folder} is not a folder." if folder.exists() else
                                 f"{STEMS_DIR} {folder} does not exist.")
    return stem_files_by_name((path for path in sorted(folder.iterdir()) if path.is_file()), str(folder))


def stem_files_by_name(paths: Iterable[Path], where: str) -> dict[str, Path]:
    """The files among `paths` named after a stem, by stem; none, or two for one stem, is an error naming `where`."""
    found = {}
    for path in map(Path, paths):
        stem = path.stem.lower()
        if stem in found:
            raise ValueError(f"{where} has two files for the {stem} stem, {found[stem].name} and {path.name}; keep "
                             "one.")
        if stem in STEMS:
            found[stem] = path
    if not found:
        raise ValueError(f"{where} holds no stem file: name each after its stem ({STEM_FILE_NAMES}).")
    return found


def check_stems(stems, anchor: str) -> list[str]:
    """`validate_stems` (default: all four), and a target stem beside the anchor to compare it with."""
    stems = validate_stems(stems or STEMS, anchor)
    if not any(stem in TARGET_STEMS and stem != anchor for stem in stems):
        raise ValueError(f"Nothing to compare: among the stems {stems}, the only bass, drums or vocals stem is the "
                         f"anchor {anchor!r}; name the others in the mix with --stems.")
    return stems


def stems_heard(audio_inputs: str, anchor: str, stems, files: StemFiles | None):
    """Refuse stem files the model does not hear and a model run without the files it needs; return the stems present
    in the mix: `stems` (None: all four), or for a model that hears every stem those of the files given."""
    setting = f"(audio_inputs={audio_inputs})"
    if audio_inputs == "mix":
        if files is not None:
            raise ValueError(f"this model hears only the mix {setting}; drop {files.option}.")
        return stems
    if audio_inputs == "stems" and (files is None or files.option == ANCHOR_AUDIO):
        instead = f" instead of {ANCHOR_AUDIO}" if files else ""
        raise ValueError(f"this model hears the mix and every stem {setting}; add {STEMS_DIR} DIR{instead}, a folder "
                         f"of the stems ({STEM_FILE_NAMES}).")
    if files is None:
        raise ValueError(f"this model hears the mix and the anchor stem {setting}; add {ANCHOR_AUDIO} FILE, the "
                         f"{anchor} stem alone (or {STEMS_DIR} DIR).")
    if anchor not in files.paths:
        raise ValueError(f"{files.where} holds no {anchor} file ({anchor}.wav, say): this model hears the anchor stem "
                         f"beside the mix {setting}.")
    if audio_inputs == "mix+anchor":
        return stems
    found = [stem for stem in STEMS if stem in files.paths]
    if stems is not None and [stem for stem in STEMS if stem in stems] != found:
        raise ValueError(f"--stems {','.join(stems)} differs from the stem files in {files.where} "
                         f"({', '.join(found)}); this model hears every stem {setting}, so the files say which are in "
                         "the mix: drop --stems.")
    return found


def open_stem_files(mix: AudioFile, files: StemFiles | None, clips: Iterable[str]) -> dict[str, AudioFile]:
    """The files of the stems among `clips` (the clip names of a prompt) that were given, opened and checked against
    the mix."""
    if files is None:
        return {}
    opened = {stem: open_audio(path) for stem, path in files.paths.items() if stem in clips}
    for stem in opened.values():
        check_aligned(mix, stem)
    return opened


def check_aligned(mix: AudioFile, stem: AudioFile) -> None:
    """Raise unless `stem` has the mix's sampling rate and exactly its length in frames (no tolerance: a window reads
    the same frames of both, so a stem that is shifted or cut would be judged against the wrong part of the mix)."""
    if stem.rate != mix.rate:
        raise ValueError(f"Stem file {stem.path} is at {stem.rate} Hz but the mix {mix.path} is at {mix.rate} Hz; "
                         "export the stems and the mix at the same rate.")
    if stem.frames != mix.frames:
        raise ValueError(f"Stem file {stem.path} lasts {stem.frames} frames ({stem.seconds:.3f} s) but the mix "
                         f"{mix.path} lasts {mix.frames} ({mix.seconds:.3f} s); export the stems and the mix over the "
                         "same stretch of the song.")


def prepare_inputs(audio: AudioFile, anchor: str, stems, files: StemFiles | None, audio_inputs: str):
    """(stems present, stem files opened) for a model of the `audio_inputs` setting, every check made: the anchor and
    the stem names first, then the files."""
    check_stems(stems, anchor)
    stems = check_stems(stems_heard(audio_inputs, anchor, stems, files), anchor)
    return stems, open_stem_files(audio, files, audio_clips(audio_inputs, anchor))


def window_clips(clips: Iterable[str], mix: np.ndarray, stem_audio: Mapping[str, AudioFile], start: int, stop: int):
    """A window's clips by name: the mix's frames [start, stop), the same frames of each stem file, and silence for a
    stem that has none (absent from the mix)."""
    def clip(name: str) -> np.ndarray:
        if name == MIX_CLIP:
            return mix
        if name in stem_audio:
            return stem_audio[name].read(start, stop)
        return np.zeros(len(mix), dtype=np.float32)

    return {name: clip(name) for name in clips}
