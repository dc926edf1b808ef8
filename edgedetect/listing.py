"""The one way to list image files under a folder, used by predict, bench, inspect, datasets and calibration.

:func:`list_images` is the walk; :func:`list_folder` is what reads the files it lists (datasets, bench,
calibration); :func:`glob_images` matches patterns over the same walk. Rules, the same for every command:

* image files are named ``*.jpg|jpeg|png|webp|bmp|gif|tif|tiff`` (any case); macOS ``._*`` resource forks and
  ``__MACOSX/`` copies are not images;
* symlinked folders are followed, and every real folder is listed once (by device and inode), so a symlink loop
  ends and an image reached by two paths is listed once, under the path met first (real folders before links);
* a sub-folder that cannot be listed (permissions) is reported in :attr:`FolderListing.skipped` and the rest is
  listed; only an unreadable top folder is an error;
* dangling symlinks and special files (pipes, devices) named like images are listed, flagged, so that the caller
  reports them instead of losing them; :func:`list_folder` leaves the special ones out (reading one would block).
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import NamedTuple

from edgedetect.errors import EdgeDetectError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def wanted(relpath: str) -> bool:
    """Whether a file at ``relpath`` (posix, relative) is an image to use."""
    # (Plain string operations: pathlib costs more than the header parse on 100k small files.)
    name = relpath.rpartition("/")[2]
    return (os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not name.startswith("._")
            and "__macosx/" not in relpath.lower())


class FileEntry(NamedTuple):
    relpath: str
    path: Path
    size: int
    mtime_ns: int
    special: bool = False  # a pipe, socket or device named like an image


class FolderListing(list):
    """A sorted list of :class:`FileEntry`, with what was left out.

    Attributes:
        skipped: ``(relpath + "/", problem)`` per sub-folder that could not be listed (a failure to report).
        repeats: ``(relpath + "/", note)`` per symlinked folder already listed through another path (not a failure).
        folders: relative paths of the folders listed (for glob patterns).
    """

    def __init__(self, entries=(), skipped=(), repeats=(), folders=()):
        super().__init__(entries)
        self.skipped = list(skipped)
        self.repeats = list(repeats)
        self.folders = list(folders)


def _problem(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "cannot list folder (permission denied)"
    return f"cannot list folder ({e.strerror or e})"


def list_images(root: str | os.PathLike, max_depth: int | None = None, all_files: bool = False) -> FolderListing:
    """Image files under ``root`` (recursively, see the module rules), sorted by relative path.

    Args:
        root: the folder.
        max_depth: list at most this many levels of sub-folders (None: all).
        all_files: list every file, not only image names (for glob patterns).

    Raises:
        EdgeDetectError: ``root`` itself cannot be listed.
    """
    root = Path(root)
    found: list[FileEntry] = []
    skipped, repeats, folders = [], [], []
    seen: set[tuple[int, int]] = set()
    real: list[tuple[Path, str, int]] = [(root, "", 0)]
    linked: list[tuple[Path, str, int]] = []  # listed after every real folder, so a real path wins over a link
    while real or linked:
        folder, prefix, depth = real.pop() if real else linked.pop(0)
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                repeats.append((prefix, f"symlink to a folder already listed ({os.path.realpath(folder)}); "
                                        "its images are listed once"))
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            if not prefix:
                raise EdgeDetectError(f"{folder}: {_problem(e)}") from None
            skipped.append((prefix, _problem(e)))
            continue
        if prefix:
            folders.append(prefix.rstrip("/"))
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                if entry.is_dir():
                    if max_depth is None or depth < max_depth:
                        (linked if entry.is_symlink() else real).append((Path(entry.path), rel + "/", depth + 1))
                    else:
                        folders.append(rel)  # below the depth asked for: named, not listed
                    continue
                if not (all_files or wanted(rel)):
                    continue
                if entry.is_file() or entry.is_symlink():  # a dangling link is listed: reported, not lost
                    st = entry.stat() if entry.is_file() else entry.stat(follow_symlinks=False)
                    found.append(FileEntry(rel, Path(entry.path), st.st_size, st.st_mtime_ns))
                else:
                    found.append(FileEntry(rel, Path(entry.path), 0, 0, special=True))
            except OSError:  # e.g. a link to itself: the read fails later and is reported there
                if all_files or wanted(rel):
                    found.append(FileEntry(rel, Path(entry.path), 0, 0))
    found.sort(key=lambda f: f.relpath)
    return FolderListing(found, sorted(skipped), sorted(repeats), sorted(folders))


def list_folder(path: str | os.PathLike) -> FolderListing:
    """:func:`list_images` without pipes and devices named like images (reading one would block): the files a
    dataset, the bench or a calibration set reads. Sub-folders that could not be listed are in ``.skipped``."""
    listing = list_images(path)
    return FolderListing([f for f in listing if not f.special], listing.skipped, listing.repeats, listing.folders)


def _matches(pattern: list[str], parts: list[str]) -> bool:
    """Glob matching of a relative path's ``parts``: ``*``, ``?``, ``[...]`` within one name (not a leading dot),
    ``**`` across any number of folders."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, parts[k:]) for k in range(len(parts) + 1))
    return (bool(parts) and (head.startswith(".") or not parts[0].startswith("."))
            and fnmatch.fnmatchcase(parts[0], head) and _matches(rest, parts[1:]))


def glob_images(pattern: str) -> tuple[list[Path], bool, list[tuple[Path, str]]]:
    """Files matched by a glob ``pattern`` (``**`` crosses folders), and image files under matched folders.

    Unlike :func:`glob.glob`, the walk is :func:`list_images`' (a symlink loop ends, a folder is visited once).

    Returns:
        ``(image files, whether anything at all matched, (folder, problem) per folder that could not be listed)``.
    """
    parts = pattern.replace(os.sep, "/").split("/")
    base_parts: list[str] = []
    for part in parts:
        if re.search(r"[*?[]", part):
            break
        base_parts.append(part)
    rest = parts[len(base_parts):]
    base = "/".join(base_parts) if base_parts else "."
    if base_parts == [""]:
        base = "/"
    if not rest or not os.path.isdir(base):
        return [], False, []
    matcher = lambda rel: _matches(rest, rel.split("/"))  # noqa: E731
    depth = None if "**" in rest else len(rest) - 1
    listing = list_images(base, max_depth=depth, all_files=True)
    join = (lambda rel: Path(base) / rel) if base_parts else (lambda rel: Path(rel))
    matched_dirs = [d for d in listing.folders if matcher(d)]
    files = [e for e in listing if matcher(e.relpath)]
    images = {e.relpath for e in files if wanted(e.relpath)}
    if matched_dirs:
        under = list_images(base, all_files=False) if depth is not None else listing
        for d in matched_dirs:
            images.update(e.relpath for e in under if e.relpath.startswith(d + "/") and wanted(e.relpath))
    skipped = [(join(rel), problem) for rel, problem in listing.skipped]
    return [join(rel) for rel in sorted(images)], bool(files or matched_dirs), skipped
