"""Writing files and folders atomically: a reader sees the old version or the complete new one, never half of it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_file_atomic(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], None]) -> Path:
    """Write `data` (text, bytes, or a function that writes to a binary file) to a temporary file beside `path`, then
    move it into place. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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


def check_writable_folder(path: str | os.PathLike, overwrite: bool = False, hint: str = "") -> Path:
    """`path` as a Path; raises `FileExistsError` when it exists and is not an empty folder, unless `overwrite`."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise FileExistsError(f"Output folder {path} already exists and is not empty{hint}.")
    return path


@contextmanager
def atomic_folder(
    path: str | os.PathLike, overwrite: bool = False, merge: bool = False, hint: str = ""
) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path` to fill; when the block ends without error its content takes the
    place of `path`, and on error it is deleted.

    `path` must be absent or an empty folder unless `overwrite`: then the new folder replaces the old one whole, or,
    with `merge`, its entries replace the old folder's entries of the same name and the others stay. `hint` ends the
    error message (e.g. " (use --overwrite to replace it)").
    """
    path = check_writable_folder(path, overwrite, hint)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".incomplete"))
    try:
        yield staging
        if merge and path.is_dir():
            for entry in staging.iterdir():
                _replace(entry, path / entry.name)
        else:
            _replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(source: Path, target: Path) -> None:
    """Rename `source` to `target`; an existing `target` is moved aside first and deleted after."""
    if not target.exists():
        os.replace(source, target)
        return
    retired = target.with_name(f".{target.name}.{os.getpid()}.old")
    os.replace(target, retired)
    os.replace(source, target)
    if retired.is_dir():
        shutil.rmtree(retired)
    else:
        retired.unlink()
