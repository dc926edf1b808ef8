"""File helpers shared by every command: atomic writes and no silent overwrites.

Every file edgedetect writes goes through :func:`atomic_write` (or its bytes and text forms).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from edgedetect.errors import EdgeDetectError, WriteError


def check_writable(path: Path, force: bool = False, option: str | None = None,
                   suffixes: tuple[str, ...] | None = None) -> None:
    """Raise EdgeDetectError, before any work, when ``path`` cannot be written as an output file.

    That is: a suffix not in ``suffixes`` (when given), a folder, an existing pipe, socket or device (even with
    ``force``), an existing file (without ``force``), or a missing or read-only parent folder. ``option`` (e.g. ``--plot``) is named in the message.
    """
    label = f"{option} {path}" if option else str(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise EdgeDetectError(f"{label}: unsupported file type {path.suffix or '(no suffix)'!r}; "
                              f"use one of {', '.join(suffixes)}")
    if path.is_dir():
        raise EdgeDetectError(f"{label}: is a folder; give a file name inside it")
    if path.exists() and not path.is_file():  # --force or not: replacing a pipe or device node is never meant
        raise EdgeDetectError(f"{label}: exists and is not a regular file (a pipe, socket or device); "
                              "choose another output path")
    if path.exists() and not force:
        raise EdgeDetectError(f"{label} already exists; pass --force to overwrite it or choose another output path")
    parent = path.parent
    if not parent.is_dir():
        raise EdgeDetectError(f"{label}: output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise EdgeDetectError(f"{label}: output folder {parent} is not writable")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Have ``write(tmp)`` write a temporary file in ``path``'s folder, then rename it to ``path``.

    Readers never see a half-written file, and an interrupted or failed write leaves the old file (if any) intact
    and no temporary behind. ``suffix`` ends the temporary's name (writers such as ``numpy.savez`` add their own
    suffix to a name without it).

    Raises:
        EdgeDetectError: ``path`` is a pipe, socket or device, or the write failed (disk full, file-size limit;
            a :class:`WriteError`, which is an OSError too).
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise EdgeDetectError(f"{path}: exists and is not a regular file (a pipe, socket or device); nothing was "
                              "written")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise WriteError(f"{path}: cannot write ({e.strerror or e}); nothing was written") from None
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # disk full, a file-size limit, a quota: the user's to fix, not a bug
            raise WriteError(f"{path}: cannot write ({e.strerror or e}); nothing was written, any file "
                             "there before is unchanged") from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
