"""Datasets: a folder, a ``.tar.gz``/``.tgz``/``.tar`` or a ``.zip`` holding images in class folders.

Recognised layouts (folder names are case-insensitive):

* class folders ``REAL|real|0|nature`` -> REAL and ``FAKE|fake|1|ai`` -> FAKE
  (CIFAKE ``train/REAL``, the faces set ``train/0``, GenImage ``train/nature`` / ``train/ai``, your own ``REAL``/``FAKE``);
* optional split folders ``train``, ``val|valid|validate|validation``, ``test`` above (or below) them.
  Images in bare class folders are training data.

Anything ambiguous is an error that shows what was found: a path under both a REAL and a FAKE folder, or under
two split folders, or images both inside and outside split folders. Images outside any class folder are
listed in :attr:`Dataset.unlabelled`; files that cannot be decoded are listed in :attr:`Dataset.unreadable`;
both are skipped, never silently.

When a dataset has no validation split, a deterministic, stratified one is carved from train.
Images are decoded once with the runtime's :func:`edgedetect.preprocess.load_image` and the uint8 arrays are
cached in :func:`cache_dir` (keyed by the source's content — an archive's bytes, or a folder's file names and
bytes — the input size and the preprocessing; a damaged cache file is removed and decoded again; folders of fewer than
:data:`FOLDER_CACHE_MIN_IMAGES` images are not cached), so later epochs and runs read from memory. A folder whose
arrays would exceed the memory budget (:func:`default_memory_budget`) streams instead: its splits are
:class:`StreamingSplit` objects that decode files on demand.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tarfile
import time
import warnings
import zipfile
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np

from edgedetect import LABELS
from edgedetect.errors import EdgeDetectError, EdgeDetectWarning, ImageError
from edgedetect.files import atomic_write
from edgedetect.listing import IMAGE_SUFFIXES, FileEntry, list_folder
from edgedetect.listing import wanted as _wanted
from edgedetect.preprocess import (MAX_IMAGE_BYTES, PREPROCESSING, SUPPORTED_FORMATS, load_image, read_file,
                                   too_large)
from edgedetect.sampling import stratified_split

CLASS_FOLDERS = {"real": 0, "0": 0, "nature": 0, "fake": 1, "1": 1, "ai": 1}
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
}
SPLITS = ("train", "val", "test")
NO_SPLIT = "train"  # images in bare class folders count as training data
DEFAULT_MEMORY_BUDGET = 4 * 2**30
# Smaller folders decode in seconds; caching them would only litter the cache with copies of scratch folders.
FOLDER_CACHE_MIN_IMAGES = 1000
_CACHE_VERSION = 1


def archive_kind(path: Path) -> str:
    """``folder``, ``tar`` or ``zip``; raises EdgeDetectError for anything else."""
    name = path.name.lower()
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise EdgeDetectError(f"{path}: dataset not found (expected a folder, a .tar.gz or a .zip)")
    if not path.is_file():  # reading a pipe would block, a device never end
        raise EdgeDetectError(f"{path}: not a regular file (a pipe, socket or device); expected a folder, a .tar.gz "
                              "or a .zip")
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise EdgeDetectError(f"{path}: not a dataset (expected a folder, a .tar.gz/.tgz/.tar or a .zip archive)")


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


class Scan:
    """One pass over a folder or archive, yielding ``(relpath, bytes or None, problem or None)`` per image file.

    ``position`` and ``total`` count bytes of the source (compressed bytes for archives) for a progress bar;
    ``files`` counts what was yielded.
    """

    def __init__(self, path: Path, listing: list[FileEntry] | None = None):
        self.path = path
        self.kind = archive_kind(path)
        if self.kind != "folder":
            self.kind = sniff_archive(path) or self.kind  # the content decides: a zip named .tar.gz is read as a zip
        if self.kind == "folder" and listing is None:
            listing = list_folder(path)
        self.listing = listing
        self.total = sum(f.size for f in listing) if listing is not None else path.stat().st_size
        self.position = 0
        self.files = 0

    def __iter__(self) -> Iterator[tuple[str, bytes | None, str | None]]:
        if self.kind == "folder":
            yield from self._folder()
        elif self.kind == "tar":
            yield from self._tar()
        else:
            yield from self._zip()

    def _folder(self):
        for relpath, problem in getattr(self.listing, "skipped", ()):
            self.files += 1
            yield relpath, None, problem
        for f in self.listing:
            try:
                data, problem = read_file(f.path), None
            except ImageError as e:
                data, problem = None, e.problem
            self.position += f.size
            self.files += 1
            yield f.relpath, data, problem

    def _tar(self):
        try:
            with open(self.path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
                for member in tar:
                    if not _wanted(member.name) or not (member.isfile() or member.islnk() or member.issym()):
                        continue
                    data, problem = None, None
                    try:
                        target = tar._find_link_target(member) if (member.islnk() or member.issym()) else member
                    except KeyError:
                        problem = f"link to {member.linkname}, which is not a file in the archive"
                    else:
                        if target.size > MAX_IMAGE_BYTES:  # refused from the header, before reading a byte of it
                            problem = too_large(target.size)
                        elif not target.isfile():
                            problem = f"link to {member.linkname}, which is not a file in the archive"
                        else:
                            data = tar.extractfile(target).read()
                    self.position = raw.tell()
                    self.files += 1
                    yield member.name, data, problem
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise EdgeDetectError(f"{self.path}: cannot read archive ({_first_line(e)}); check the file, or extract "
                                  "it and pass the folder") from None

    def _zip(self):
        try:
            with zipfile.ZipFile(self.path) as zf:
                for info in zf.infolist():
                    if info.is_dir() or not _wanted(info.filename):
                        continue
                    data, problem = None, None
                    if info.flag_bits & 0x1:
                        problem = "encrypted in the zip; extract it with its password and pass the folder"
                    elif info.file_size > MAX_IMAGE_BYTES:  # zipfile reads no more than the declared size
                        problem = too_large(info.file_size)
                    else:
                        try:
                            data = zf.read(info)
                        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError,
                                OSError) as e:
                            # one bad member, not a bad archive
                            problem = f"cannot extract from the zip ({_first_line(e)})"
                    self.position = info.header_offset + info.compress_size
                    self.files += 1
                    yield info.filename, data, problem
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise EdgeDetectError(f"{self.path}: cannot read archive ({_first_line(e)}); check the file, or extract "
                                  "it and pass the folder") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(e).__name__


def sniff_archive(path: Path) -> str | None:
    """``tar`` or ``zip`` from the first bytes of ``path`` (gzip, bzip2, xz, plain tar; zip), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    return None


def iter_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(relative posix path, bytes)`` for every image-named file in a folder or archive.

    Files that cannot be read are yielded with ``b""`` bytes, so the caller reports them instead of losing them.
    """
    for relpath, data, _ in Scan(Path(path)):
        yield relpath, data or b""


@contextmanager
def progress_bar(verb: str, scan: Scan, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A transient rich bar on stderr following ``scan``; yields ``tick()`` to call after each file."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn(f"{verb} {scan.path.name}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[files]:,} files"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not enabled) as bar:
        task = bar.add_task("", total=scan.total or None, files=0)
        last = [0.0]

        def tick() -> None:
            now = time.monotonic()
            if now - last[0] > 0.05:  # rich redraws at 10 Hz anyway; updating per file costs more than a header parse
                last[0] = now
                bar.update(task, completed=scan.position, files=scan.files)

        yield tick
        bar.update(task, completed=scan.position, files=scan.files)


def _folder_info(parent: str) -> tuple[str | None, int | None, str | None]:
    """``(split, label, problem)`` for a folder path; ``problem`` says why it is ambiguous."""
    parts = PurePosixPath(parent).parts
    classes = [p for p in parts if p.lower() in CLASS_FOLDERS]
    splits = [p for p in parts if p.lower() in SPLIT_FOLDERS]
    labels = {CLASS_FOLDERS[p.lower()] for p in classes}
    split_names = {SPLIT_FOLDERS[p.lower()] for p in splits}
    if len(labels) > 1:
        return None, None, f"{parent}/ is under both a REAL and a FAKE folder ({', '.join(classes)})"
    if len(split_names) > 1:
        return None, None, f"{parent}/ is under more than one split folder ({', '.join(splits)})"
    if not labels:
        return None, None, None
    return (split_names.pop() if split_names else None), labels.pop(), None


def classify(relpath: str) -> tuple[str | None, int | None]:
    """``(split, label)`` of an image from the folder names in its path; ``None`` where none is recognised.

    The class comes from a class folder anywhere in the path, the split from a split folder anywhere in it;
    a path with two different classes or splits is ambiguous and gives ``(None, None)``.
    """
    split, label, _ = _folder_info(str(PurePosixPath(relpath).parent))
    return split, label


class Layout:
    """Classifies file paths one by one and collects what makes a layout unusable or ambiguous."""

    def __init__(self) -> None:
        self.folders: dict[str, tuple[str | None, int | None, str | None]] = {}
        self.counts: Counter[str] = Counter()  # folder -> files
        self.unlabelled: list[str] = []
        self.files = 0

    def add(self, relpath: str) -> tuple[str, int] | None:
        """``(split, label)`` for a usable image (split defaulting to train); ``None`` when it has no class."""
        self.files += 1
        parent = relpath.rpartition("/")[0] or "."
        info = self.folders.get(parent)
        if info is None:
            info = self.folders[parent] = _folder_info(parent)
        self.counts[parent] += 1
        split, label, problem = info
        if label is None:
            if problem is None:
                self.unlabelled.append(relpath)
            return None
        return split or NO_SPLIT, label

    def class_folders(self) -> dict[str, dict]:
        """``{folder: {"split", "class", "files"}}`` for every folder that holds labelled images."""
        return {
            folder: {"split": split or NO_SPLIT, "class": LABELS[label], "files": self.counts[folder]}
            for folder, (split, label, _) in sorted(self.folders.items())
            if label is not None
        }

    def counts_by_split(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for info in self.class_folders().values():
            row = out.setdefault(info["split"], dict.fromkeys(LABELS, 0))
            row[info["class"]] += info["files"]
        return {s: out[s] for s in SPLITS if s in out}

    def problems(self) -> list[str]:
        """Why the layout is ambiguous, one sentence each (empty when it is fine)."""
        out = [problem for _, _, problem in self.folders.values() if problem]
        inside = {f: n for f, n in self.counts.items() if self.folders[f][1] is not None and self.folders[f][0]}
        outside = {f: n for f, n in self.counts.items() if self.folders[f][1] is not None and not self.folders[f][0]}
        if inside and outside:
            show = lambda d: ", ".join(f"{f}/ ({n})" for f, n in sorted(d.items())[:4]) + (", ..." if len(d) > 4 else "")
            out.append(f"images both inside split folders ({show(inside)}) and outside them ({show(outside)}); "
                       "move the loose ones into a split folder (e.g. train/) or remove them")
        return sorted(out)

    def check(self, source: Path | str) -> None:
        """Raise EdgeDetectError when there are no images, no class folders, an ambiguity, or a one-class split."""
        if self.files == 0:
            raise EdgeDetectError(
                f"{source}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                "point at the folder or archive that holds the images"
            )
        problems = self.problems()
        if problems:
            raise EdgeDetectError(
                f"{source}: ambiguous layout: {'; '.join(problems[:5])}"
                + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                + ". Each image must sit under exactly one class folder (REAL|real|0|nature or FAKE|fake|1|ai) "
                "and at most one split folder (train|val|valid|validate|validation|test)."
            )
        counts = self.counts_by_split()
        if not counts:
            found = ", ".join(sorted({str(PurePosixPath(p).parent) + "/" for p in self.unlabelled})[:8])
            raise EdgeDetectError(
                f"{source}: no class folders found (found: {found}). Put images in REAL/FAKE (or real/fake, 0/1, "
                "nature/ai) folders, optionally under train/val/test."
            )
        _check_two_classes(source, counts)


def _check_two_classes(source, counts: dict[str, dict[str, int]]) -> None:
    for name, row in counts.items():
        if min(row.values()) == 0:
            raise EdgeDetectError(
                f"{source}: split '{name}' has only one class ({row}); a detector needs both REAL and FAKE images."
            )


def scan_layout(path: str | os.PathLike) -> Layout:
    """Classify a dataset's files by name only (no decoding); for folders this costs a directory listing."""
    layout = Layout()
    path = Path(path)
    if archive_kind(path) == "folder":
        for f in list_folder(path):
            layout.add(f.relpath)
    else:
        for relpath, _, _ in Scan(path):
            layout.add(relpath)
    return layout


@dataclass
class SplitArrays:
    """Decoded images of one split: ``x`` uint8 (N, S, S, 3), ``y`` int (N,) with 1 = FAKE, and their paths."""

    x: np.ndarray
    y: np.ndarray
    paths: list[str]

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> dict[str, int]:
        return {label: int((self.y == i).sum()) for i, label in enumerate(LABELS)}

    def subset(self, idx: np.ndarray) -> "SplitArrays":
        return SplitArrays(self.x[idx], self.y[idx], [self.paths[i] for i in idx])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x uint8, y)`` batches in order."""
        for i in range(0, len(self), batch_size):
            yield np.asarray(self.x[i : i + batch_size]), self.y[i : i + batch_size]


class ImageFiles:
    """Image files decoded on demand; indexing returns uint8 arrays as indexing a (N, S, S, 3) array would.

    Integers, slices, index arrays and boolean masks work; ``np.asarray`` decodes everything (mind the memory).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, files: list[str], img_size: int):
        self.files = list(files)
        self.img_size = img_size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.img_size, self.img_size, 3)

    def __len__(self) -> int:
        return len(self.files)

    def _indices(self, key) -> np.ndarray:
        return np.arange(len(self.files))[key]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return load_image(self.files[key], self.img_size)
        out = np.empty((0, self.img_size, self.img_size, 3), np.uint8)
        idx = self._indices(key)
        if len(idx):
            out = np.stack([load_image(self.files[i], self.img_size) for i in idx])
        return out

    def take(self, idx) -> "ImageFiles":
        """A lazy subset (nothing is decoded)."""
        return ImageFiles([self.files[i] for i in self._indices(idx)], self.img_size)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        x = self[:]
        return x if dtype is None else x.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        return np.asarray(self, dtype=dtype)


class StreamingSplit(SplitArrays):
    """A split too large for memory: ``x`` is :class:`ImageFiles`, decoded batch by batch from disk."""

    def subset(self, idx: np.ndarray) -> "StreamingSplit":
        return StreamingSplit(self.x.take(idx), self.y[idx], [self.paths[i] for i in idx])


@dataclass
class Dataset:
    """A loaded dataset: its splits (``train``/``val``/``test`` where present) and what was skipped."""

    source: str
    img_size: int
    splits: dict[str, SplitArrays]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    val_carved: bool = False
    unlabelled: list[str] = field(default_factory=list)  # image files outside any class folder
    streaming: bool = False

    def split(self, name: str) -> SplitArrays:
        if name not in self.splits:
            raise EdgeDetectError(
                f"{self.source}: has no '{name}' split (found: {', '.join(self.splits) or 'none'}). "
                "Pick one of those with --split, or point --data at a dataset that has it."
            )
        return self.splits[name]

    def describe(self) -> dict:
        """JSON-able summary: source, counts per split and class, how val was made, what was skipped."""
        return {
            "source": self.source,
            "img_size": self.img_size,
            "counts": {name: s.counts() for name, s in self.splits.items()},
            "val": "carved from train" if self.val_carved else "from the dataset",
            "unreadable": len(self.unreadable),
            "unlabelled": len(self.unlabelled),
            "streaming": self.streaming,
        }


def carve_validation(train: SplitArrays, fraction: float, seed: int) -> tuple[SplitArrays, SplitArrays]:
    """Deterministic, stratified ``(train, val)`` split of ``train`` (:func:`edgedetect.sampling.stratified_split`)."""
    if not 0.0 < fraction < 1.0:
        raise EdgeDetectError(f"--val-fraction must be between 0 and 1 (exclusive); received {fraction}")
    kept, held = stratified_split(train.y, fraction, seed)
    return train.subset(kept), train.subset(held)


def cache_dir() -> Path:
    """Where decoded arrays are cached: ``$EDGEDETECT_CACHE`` or ``~/.cache/edgedetect``."""
    return Path(os.environ.get("EDGEDETECT_CACHE", Path.home() / ".cache" / "edgedetect"))


def default_memory_budget() -> int:
    """Bytes of decoded arrays a dataset may take in memory: ``$EDGEDETECT_MEMORY_BUDGET`` (e.g. ``8G``) or 4 GiB."""
    raw = os.environ.get("EDGEDETECT_MEMORY_BUDGET", "").strip()
    if not raw:
        return DEFAULT_MEMORY_BUDGET
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", raw, re.IGNORECASE)
    if not m:
        raise EdgeDetectError(
            f"EDGEDETECT_MEMORY_BUDGET={raw!r} is not a size; use bytes or a number with K, M, G or T (e.g. 8G)"
        )
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _cache_key(path: Path, img_size: int, listing: list[FileEntry] | None = None) -> str:
    """Key of the decoded arrays: the source's bytes (an archive's, or every file's of a folder, with its name),
    the input size and the preprocessing. Content, not size and mtime: a file replaced by another of the same
    size and time must not bring back the old arrays."""
    ident = {"source": str(path.resolve()), "img_size": img_size, "preprocessing": PREPROCESSING, "version": _CACHE_VERSION}
    h = hashlib.sha256()
    for name, file in ([("", path)] if listing is None else [(f.relpath, f.path) for f in listing]):
        h.update(f"{name}\0".encode())
        try:  # non-blocking: a link to a pipe must not stall the key
            with os.fdopen(os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode) or (info.st_size > MAX_IMAGE_BYTES and listing is not None):
                    h.update(f"not read: {info.st_mode} {info.st_size}".encode())  # refused when decoding
                    continue
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError as e:
            h.update(f"unreadable: {e.errno}".encode())
    h.update(repr(getattr(listing, "skipped", None)).encode())
    ident["content"] = h.hexdigest()
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _over_budget(source: Path, n: int, img_size: int, budget: int) -> EdgeDetectError:
    return EdgeDetectError(
        f"{source}: {n:,}+ images at {img_size}x{img_size} need over {_gib(n * img_size * img_size * 3)} of arrays, "
        f"more than the memory budget of {_gib(budget)}. Extract the archive and pass the folder (folders stream "
        "from disk), or raise EDGEDETECT_MEMORY_BUDGET (e.g. 16G) if the machine has the memory."
    )


def _decode_all(path: Path, img_size: int, progress: bool, budget: int, listing=None):
    arrays: dict[str, tuple[list, list, list]] = {}
    unreadable: list[tuple[str, str]] = []
    layout = Layout()
    scan = Scan(path, listing)
    n, per_image = 0, img_size * img_size * 3
    with progress_bar("decoding", scan, progress) as tick:
        for relpath, data, problem in scan:
            tick()
            where = layout.add(relpath)
            if where is None:
                continue
            if problem is None:
                try:
                    img = load_image(data, img_size)
                except ImageError as e:
                    problem = e.problem
            if problem is not None:
                unreadable.append((relpath, problem))
                continue
            n += 1
            if n * per_image > budget:
                raise _over_budget(path, n, img_size, budget)
            xs, ys, ps = arrays.setdefault(where[0], ([], [], []))
            xs.append(img)
            ys.append(where[1])
            ps.append(relpath)
    layout.check(path)
    splits = {
        name: SplitArrays(np.stack(xs), np.asarray(ys, np.int8), ps)
        for name, (xs, ys, ps) in sorted(arrays.items(), key=lambda kv: SPLITS.index(kv[0]))
    }
    return splits, unreadable, layout.unlabelled


def _check_layout(path: Path, splits: dict[str, SplitArrays]) -> None:
    if not splits:
        raise EdgeDetectError(f"{path}: none of the images could be decoded; run `edgedetect data inspect {path}` to see why")
    _check_two_classes(path, {name: s.counts() for name, s in splits.items()})


def _streaming_splits(listing: list[FileEntry], layout_of: dict[str, tuple[str, int]], img_size: int,
                      scan: Scan, progress: bool) -> tuple[dict[str, SplitArrays], list[tuple[str, str]]]:
    """Splits of lazily decoded files; headers are opened once so unreadable files are listed up front."""
    from PIL import Image

    rows: dict[str, tuple[list, list, list]] = {}
    unreadable: list[tuple[str, str]] = list(getattr(listing, "skipped", ()))
    with progress_bar("checking", scan, progress) as tick:
        for f in listing:
            scan.position += f.size
            scan.files += 1
            tick()
            where = layout_of.get(f.relpath)
            if where is None:
                continue
            if f.size > MAX_IMAGE_BYTES:
                unreadable.append((f.relpath, too_large(f.size)))
                continue
            try:
                if not stat.S_ISREG(os.stat(f.path).st_mode):  # a link to a pipe: opening it would block
                    unreadable.append((f.relpath, "not a regular file (a pipe, socket or device)"))
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(f.path, formats=SUPPORTED_FORMATS) as img:
                        img.size  # noqa: B018 -- the header is parsed by open(); this only documents the intent
            except Image.UnidentifiedImageError:
                unreadable.append((f.relpath, "not an image file edgedetect reads (JPEG, PNG, WebP, BMP, GIF, TIFF)"))
                continue
            except Exception as e:  # Pillow raises many kinds of errors on malformed headers
                unreadable.append((f.relpath, f"cannot open image ({str(e) or type(e).__name__})"))
                continue
            files, ys, ps = rows.setdefault(where[0], ([], [], []))
            files.append(str(f.path))
            ys.append(where[1])
            ps.append(f.relpath)
    splits = {
        name: StreamingSplit(ImageFiles(files, img_size), np.asarray(ys, np.int8), ps)
        for name, (files, ys, ps) in sorted(rows.items(), key=lambda kv: SPLITS.index(kv[0]))
    }
    return splits, unreadable


def load_dataset(
    path: str | os.PathLike,
    img_size: int,
    val_fraction: float = 0.1,
    seed: int = 0,
    use_cache: bool = True,
    progress: bool = True,
    memory_budget: int | None = None,
) -> Dataset:
    """Load a dataset as uint8 arrays, decoding through the runtime's preprocessing.

    Args:
        path: folder or archive (see the module docstring for layouts).
        img_size: side of the square arrays.
        val_fraction: share of train carved into ``val`` (stratified, seeded) when the dataset has no val split.
        seed: seed of that carve.
        use_cache: read/write decoded arrays in :func:`cache_dir`.
        progress: show a progress bar (stderr) while decoding.
        memory_budget: bytes the arrays may take [default: :func:`default_memory_budget`]; a folder over it
            streams (its splits are :class:`StreamingSplit`), an archive over it is an error.

    Raises:
        EdgeDetectError: missing path, unknown format, no images, no class folders, an ambiguous layout,
            a split holding one class only, or an archive too large for the memory budget.
    """
    path = Path(path)
    kind = archive_kind(path)
    budget = default_memory_budget() if memory_budget is None else memory_budget
    listing = list_folder(path) if kind == "folder" else None
    if listing is not None:
        layout = Layout()
        layout_of = {f.relpath: where for f in listing if (where := layout.add(f.relpath)) is not None}
        layout.check(path)  # fail before decoding anything
        if len(layout_of) * img_size * img_size * 3 > budget:
            splits, unreadable = _streaming_splits(listing, layout_of, img_size, Scan(path, listing), progress)
            _check_layout(path, splits)
            return _finish(Dataset(str(path), img_size, splits, unreadable, unlabelled=layout.unlabelled, streaming=True),
                           val_fraction, seed)
    cache_file = None
    if use_cache and (listing is None or len(layout_of) >= FOLDER_CACHE_MIN_IMAGES):
        cache_file = cache_dir() / f"{path.name or path.resolve().name}-{img_size}px-{_cache_key(path, img_size, listing)}.npz"
    cached = _read_cache(cache_file) if cache_file is not None and cache_file.exists() else None
    if cached is not None:
        splits, unreadable, unlabelled = cached
    else:
        splits, unreadable, unlabelled = _decode_all(path, img_size, progress, budget, listing)
        _check_layout(path, splits)
        if cache_file is not None:
            _write_cache(cache_file, splits, unreadable, unlabelled)
    _check_layout(path, splits)
    return _finish(Dataset(str(path), img_size, splits, unreadable, unlabelled=unlabelled), val_fraction, seed)


def _finish(dataset: Dataset, val_fraction: float, seed: int) -> Dataset:
    splits = dataset.splits
    if "val" not in splits and "train" in splits:
        splits["train"], splits["val"] = carve_validation(splits["train"], val_fraction, seed)
        dataset.val_carved = True
        dataset.splits = {n: splits[n] for n in SPLITS if n in splits}
    return dataset


def _read_cache(cache_file: Path):
    """``(splits, unreadable, unlabelled)`` from a cache file, or None (with a warning; the file is removed) when
    it is damaged: truncated, not an .npz, or holding arrays that do not fit together."""
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            names = [str(n) for n in z["splits"]]
            splits = {n: SplitArrays(z[f"x_{n}"], z[f"y_{n}"], [str(p) for p in z[f"paths_{n}"]]) for n in names}
            unreadable = [tuple(map(str, row)) for row in z["unreadable"].reshape(-1, 2)]
            unlabelled = [str(p) for p in z["unlabelled"]] if "unlabelled" in z.files else []
        for n, split in splits.items():
            x = split.x
            if (n not in SPLITS or x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:3] != (x.shape[1], x.shape[1])
                    or x.shape[3] != 3 or len(split.y) != len(x) or len(split.paths) != len(x)
                    or not np.isin(split.y, (0, 1)).all()):
                raise ValueError(f"split {n!r} holds arrays that do not fit together")
        return splits, unreadable, unlabelled
    except Exception as e:  # noqa: BLE001 -- zipfile, numpy and pickle-refusal errors: the cache is only a copy
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f"{cache_file}: damaged cache file ({detail}); removed, decoding the dataset again",
                      EdgeDetectWarning, stacklevel=2)
        try:
            cache_file.unlink()
        except OSError:
            pass
        return None


_TMP_CACHE = re.compile(r"\.tmp(\d+)\.npz$")


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary cache files left by a process that was killed while writing one."""
    for tmp in folder.glob("*.tmp*.npz"):
        m = _TMP_CACHE.search(tmp.name)
        if not m:
            continue
        pid = int(m.group(1))
        try:
            alive = pid != os.getpid() and (os.kill(pid, 0) or True)
        except ProcessLookupError:
            alive = False
        except OSError:  # another user's process: alive
            alive = True
        try:
            if not alive or time.time() - tmp.stat().st_mtime > 86400:
                tmp.unlink()
        except OSError:
            pass


def _write_cache(cache_file: Path, splits: dict[str, SplitArrays], unreadable: list[tuple[str, str]],
                 unlabelled: list[str]) -> None:
    payload = {"splits": np.array(list(splits))}
    for name, s in splits.items():
        payload.update({f"x_{name}": s.x, f"y_{name}": s.y, f"paths_{name}": np.array(s.paths)})
    payload["unreadable"] = np.array(unreadable, dtype=str).reshape(-1, 2)
    payload["unlabelled"] = np.array(unlabelled, dtype=str)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(cache_file.parent)
        # The pid in the temporary's name lets a later run tell a dead writer's leftover from a live one's file.
        atomic_write(cache_file, lambda tmp: np.savez(tmp, **payload), suffix=f".tmp{os.getpid()}.npz")
    except (OSError, EdgeDetectError):  # a cache that cannot be written only costs time; Ctrl-C still stops
        pass
