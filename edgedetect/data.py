"""Datasets: a folder, a ``.tar.gz``/``.tgz``/``.tar`` or a ``.zip`` holding images in class folders, loaded as arrays.

The source is read by :mod:`edgedetect.archives` and its images are labelled by :mod:`edgedetect.layout` (which
describes the recognised layouts; anything ambiguous is an error). Images outside any class folder are listed in
:attr:`Dataset.unlabelled`; files that cannot be decoded are listed in :attr:`Dataset.unreadable`; both are skipped,
never silently.

When a dataset has no validation split, a deterministic, stratified one is carved from train.
Images are decoded once with the runtime's :func:`edgedetect.preprocess.load_image` and the uint8 arrays are
cached in :func:`cache_dir` (keyed by the source's content — an archive's bytes, or a folder's file names and
bytes — the input size and the preprocessing; a damaged cache file is removed and decoded again; folders of fewer than
:data:`FOLDER_CACHE_MIN_IMAGES` images are not cached), so later epochs and runs read from memory. A folder whose
arrays would exceed the memory budget (:func:`default_memory_budget`) streams instead: its splits are
:class:`StreamingSplit` objects that decode files on demand.

The names of :mod:`edgedetect.archives`, :mod:`edgedetect.layout` and :func:`edgedetect.listing.list_folder` that
callers used to import from here are still importable from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from edgedetect import LABELS
from edgedetect.archives import Scan, archive_kind, progress_bar
from edgedetect.errors import EdgeDetectError, EdgeDetectWarning, ImageError
from edgedetect.files import atomic_write
from edgedetect.layout import SPLITS, Layout, check_two_classes
from edgedetect.listing import FileEntry, list_folder
from edgedetect.preprocess import MAX_IMAGE_BYTES, PREPROCESSING, SUPPORTED_FORMATS, load_image, too_large
from edgedetect.sampling import stratified_split

DEFAULT_MEMORY_BUDGET = 4 * 2**30
# Smaller folders decode in seconds; caching them would only litter the cache with copies of scratch folders.
FOLDER_CACHE_MIN_IMAGES = 1000
_CACHE_VERSION = 1


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
    check_two_classes(path, {name: s.counts() for name, s in splits.items()})


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
