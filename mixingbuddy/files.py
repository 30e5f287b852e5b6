"""Files and folders: telling a local path from a Hub id, writing safely (atomically: a reader sees the old version or
the whole new one; replacing only what MixingBuddy wrote, never an input; clearing what a dead process of ours left),
uploading a folder to the Hub, and one-line error messages."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

MARKER = ".mixingbuddy.json"  # {"kind": "dataset" | "evaluation" | "demo" | "model", ...}: what wrote the folder


def error_summary(error: BaseException) -> str:
    """The first line of an exception's message (libraries' can span many), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_local_only(reference: str | os.PathLike) -> bool:
    """Whether a model or data-set reference can only be a local path: it exists, starts with ".", "/" or "~", or has
    no "/" or more than one. A plain "owner/name" that does not exist locally may be a Hub id."""
    text = str(reference)
    return Path(text).expanduser().exists() or text.startswith((".", "/", "~")) or text.count("/") != 1


def write_file_atomic(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], None]) -> Path:
    """Write `data` (text, bytes, or a function that writes to a binary file) to a temporary file beside `path`, then
    move it into place. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            if callable(data):
                data(file)
            else:
                file.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(temporary, 0o644)  # mkstemp makes files private
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker MixingBuddy left in `folder` (its kind and what it was made from), or None."""
    try:
        return json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def write_marker(folder: str | os.PathLike, kind: str, **fields) -> None:
    from . import __version__

    write_file_atomic(Path(folder) / MARKER, json.dumps({"kind": kind, "version": __version__, **fields}, indent=2))


def check_location(
    path: str | os.PathLike, protected: Iterable | Mapping = (), what: str = "Output folder"
) -> Path:
    """`path`, resolved, if writing it cannot harm the current folder or an input: it must not be the current folder
    or hold it, nor be, hold or lie in a `protected` file or folder that exists (a mapping names them, {"model": DIR};
    plain paths are stems folders). Raises `ValueError` otherwise."""
    path = Path(path).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise ValueError(f"{what} {path} is the current folder or holds it; choose a folder of its own.")
    named = protected.items() if isinstance(protected, Mapping) else (("stems folder", p) for p in protected)
    for name, source in named:
        source = Path(source).expanduser().resolve()
        if source.exists() and (path == source or path in source.parents or source in path.parents):
            raise ValueError(f"{what} {path} overlaps the {name} {source}; choose a place outside it.")
    return path


def check_output_file(
    path: str | os.PathLike, overwrite: bool = False, suffix: str = "", magic: bytes = b"", protected=()
) -> Path:
    """`path`, resolved, once it is safe to write a file there: named `*suffix`, in a folder that exists, clear of the
    inputs (`check_location`); an existing file is replaced only with `overwrite` and when it starts with `magic` (one
    of its own kind). Raises `ValueError`, `FileNotFoundError` or `FileExistsError` naming the file and the reason."""
    path = check_location(path, protected, what="Output file")
    if path.is_dir():
        raise IsADirectoryError(f"Output file {path} is a folder; name a file in it.")
    if path.suffix.lower() != suffix:
        raise ValueError(f"Output file {path} must end in {suffix}.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"The folder of output file {path} does not exist.")
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"Output file {path} already exists (use --overwrite to replace it).")
        with open(path, "rb") as file:
            if file.read(len(magic)) != magic:
                raise FileExistsError(f"Output file {path} is not a {suffix} file; --overwrite replaces only those.")
    return path


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """A short hash of the name, size and modification time of each file directly in `folder` (not the hidden ones):
    it changes when a model saved there is replaced, without reading gigabytes of weights."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def check_output_folder(
    path: str | os.PathLike,
    overwrite: bool = False,
    kind: str | None = None,
    protected: Iterable | Mapping = (),
    hint: str = " (use --overwrite to replace it)",
) -> Path:
    """`path`, resolved, once it is safe to write whole: `check_location`, and if it exists and is not empty,
    `overwrite` must be set and its marker must say MixingBuddy wrote it as `kind` (without `kind`, a non-empty folder
    is never replaced). Raises `ValueError` or `FileExistsError` naming the folder and the reason."""
    path = check_location(path, protected)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not overwrite or kind is None:
            raise FileExistsError(f"Output folder {path} already exists and is not empty{hint if kind else ''}.")
        if (read_marker(path) or {}).get("kind") != kind:
            raise FileExistsError(
                f"Output folder {path} was not written by MixingBuddy as a {kind} folder (no {MARKER} says so); "
                "--overwrite replaces only such folders: remove it yourself or choose another."
            )
    return path


@contextmanager
def atomic_folder(
    path: str | os.PathLike,
    overwrite: bool = False,
    merge: bool = False,
    kind: str | None = None,
    protected: Iterable | Mapping = (),
    hint: str = " (use --overwrite to replace it)",
) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path` to fill; when the block ends without error its content takes the
    place of `path`, and on error it is deleted.

    `path` is checked by `check_output_folder`, or with `merge` and `overwrite` by `check_location` only (nothing of it
    is deleted then). The new folder replaces the old one whole, or, with `merge`, its entries replace the old folder's
    entries of the same name and the others stay. With `kind`, the new folder gets a marker saying so.
    """
    if merge and overwrite:
        path = check_location(path, protected)
    else:
        path = check_output_folder(path, overwrite, kind, protected, hint)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".incomplete"))
    try:
        yield staging
        if kind is not None and not (staging / MARKER).exists():  # the block may write a marker with more fields
            write_marker(staging, kind)
        if merge and path.is_dir():
            for entry in staging.iterdir():
                _replace(entry, path / entry.name)
        else:
            _replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_dead_temporaries(path: Path) -> None:
    """Delete the temporaries of `path` (`.NAME.PID.*`) that a process which has since died left behind."""
    prefix = f".{path.name}."
    for entry in path.parent.glob(f"{prefix}*"):
        pid = entry.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def _replace(source: Path, target: Path) -> None:
    """Rename `source` to `target`; an existing `target` is moved aside first and deleted after."""
    if not target.exists():
        os.replace(source, target)
        return
    retired = target.with_name(f"{_temporary_prefix(target)}old")
    os.replace(target, retired)
    os.replace(source, target)
    if retired.is_dir():
        shutil.rmtree(retired)
    else:
        retired.unlink()


def push_folder_to_hub(folder: Path, repo_id: str, repo_type: str = "model") -> None:
    """Upload `folder` to a Hub repository (created if needed). A failure (no network, no token, no rights) raises
    `OSError` in one line that says the local folder is complete."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type)
    except Exception as err:  # huggingface_hub raises many kinds; the user needs the first line of any
        reason = error_summary(err)
        raise OSError(f"Wrote {folder}, but could not push it to the Hub {repo_type} {repo_id}: {reason}") from None
