"""What a built data set records about the audio it came from, and the check that the stems are still that audio.

The data set's marker (`.mixingbuddy.json`, kind "dataset") holds the stems folder's absolute path and, per track
used, a content fingerprint of each stem file. Rows hold no audio, so stems edited after the build would silently
train and score against labels made for other audio: training and evaluation call `check_audio` first.
"""

from __future__ import annotations

from pathlib import Path

from mixingbuddy.files import is_local_only, read_marker, write_marker

from .corpus import Track, find_tracks


def write_provenance(folder: Path, stems_dir: Path, tracks: dict[str, Track], names, **fields) -> None:
    """Mark `folder` as a data set built from the tracks `names` of `stems_dir`."""
    fingerprints = {name: tracks[name].content_fingerprint() for name in sorted(names)}
    write_marker(folder, "dataset", stems_dir=str(Path(stems_dir).resolve()), tracks=fingerprints, **fields)


def check_audio(dataset: str | Path, stems_dir: str | Path | None = None) -> Path:
    """The stems folder to render `dataset`'s rows from: `stems_dir`, else the one the data set records.

    For a data-set folder written by build-dataset, every track it was built from must still be in that folder with
    the same content; otherwise `ValueError` names the tracks that changed or went missing. A data set without a
    record (a Hub id, say) needs `stems_dir`.
    """
    folder = Path(dataset).expanduser()
    if not folder.is_dir():
        if is_local_only(dataset):
            raise FileNotFoundError(f"Data set folder {dataset} does not exist.")
        if stems_dir is None:
            raise ValueError(f"Data set {dataset} is not a local folder; as a Hub data set it records no stems folder: "
                             "pass the stems (--stems / --stems_dir).")
        return Path(stems_dir)
    record = read_marker(folder)
    if record is None or record.get("kind") != "dataset":
        if stems_dir is None:
            raise ValueError(f"Data set {dataset} does not record its stems folder: pass it (--stems / --stems_dir).")
        return Path(stems_dir)
    stems = Path(stems_dir or record["stems_dir"])
    tracks = find_tracks(stems)
    changed = [
        name
        for name, fingerprint in record["tracks"].items()
        if name not in tracks or tracks[name].content_fingerprint() != fingerprint
    ]
    if changed:
        listed = ", ".join(repr(name) for name in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise ValueError(
            f"The stems in {stems} are not the audio data set {dataset} was built from: {listed} changed or went "
            "missing; rebuild the data set (mixingbuddy build-dataset ... --overwrite) or restore the stems."
        )
    return stems
