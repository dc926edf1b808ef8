"""Datasets: a folder, a ``.tar.gz``/``.tgz``/``.tar`` or a ``.zip`` holding images in class folders.

Recognised layouts (folder names are case-insensitive):

* class folders ``REAL|real|0|nature`` -> REAL and ``FAKE|fake|1|ai`` -> FAKE
  (CIFAKE ``train/REAL``, the faces set ``train/0``, GenImage ``train/nature`` / ``train/ai``, your own ``REAL``/``FAKE``);
* optional split folders above them: ``train``, ``val|valid|validate|validation``, ``test``.

When a dataset has no validation split, a deterministic, stratified one is carved from train.
Images are decoded once with the runtime's :func:`edgedetect.preprocess.load_image` and the uint8 arrays are
cached (keyed by the source, its size and mtime, the input size and the preprocessing), so later epochs and
runs read from memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from edgedetect import LABELS
from edgedetect.errors import EdgeDetectError, ImageError
from edgedetect.preprocess import PREPROCESSING, load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
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
_CACHE_VERSION = 1


def archive_kind(path: Path) -> str:
    """``folder``, ``tar`` or ``zip``; raises EdgeDetectError for anything else."""
    name = path.name.lower()
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise EdgeDetectError(f"{path}: dataset not found (expected a folder, a .tar.gz or a .zip)")
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise EdgeDetectError(f"{path}: not a dataset (expected a folder, a .tar.gz/.tgz/.tar or a .zip archive)")


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def iter_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(relative posix path, bytes)`` for every image-named file in a folder or archive.

    Files that cannot be read are yielded with ``b""`` bytes, so the caller reports them instead of losing them.
    """
    kind = archive_kind(path)
    if kind == "folder":
        for file in sorted(p for p in path.rglob("*") if is_image_name(p.name) and not p.is_dir()):
            try:
                data = file.read_bytes()
            except OSError:
                data = b""
            yield file.relative_to(path).as_posix(), data
    elif kind == "tar":
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.isfile() and is_image_name(member.name):
                        yield member.name, tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise EdgeDetectError(f"{path}: cannot read archive ({e})") from None
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and is_image_name(info.filename):
                        yield info.filename, zf.read(info)
        except (zipfile.BadZipFile, OSError) as e:
            raise EdgeDetectError(f"{path}: cannot read archive ({e})") from None


def classify(relpath: str) -> tuple[str | None, int | None]:
    """``(split, label)`` of an image from the folder names in its path; ``None`` where none is recognised.

    The class is the deepest folder named like a class; the split is the deepest split folder above it.
    """
    parts = [p.lower() for p in PurePosixPath(relpath).parts[:-1]]
    label_at = next((i for i in range(len(parts) - 1, -1, -1) if parts[i] in CLASS_FOLDERS), None)
    if label_at is None:
        return None, None
    split = next((SPLIT_FOLDERS[p] for p in reversed(parts[:label_at]) if p in SPLIT_FOLDERS), None)
    return split, CLASS_FOLDERS[parts[label_at]]


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


@dataclass
class Dataset:
    """A loaded dataset: its splits (``train``/``val``/``test`` where present) and what was skipped."""

    source: str
    img_size: int
    splits: dict[str, SplitArrays]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    val_carved: bool = False

    def split(self, name: str) -> SplitArrays:
        if name not in self.splits:
            raise EdgeDetectError(
                f"{self.source}: has no '{name}' split (found: {', '.join(self.splits) or 'none'}). "
                "Pick one of those with --split, or point --data at a dataset that has it."
            )
        return self.splits[name]

    def describe(self) -> dict:
        """JSON-able summary: source, counts per split and class, how val was made."""
        return {
            "source": self.source,
            "img_size": self.img_size,
            "counts": {name: s.counts() for name, s in self.splits.items()},
            "val": "carved from train" if self.val_carved else "from the dataset",
            "unreadable": len(self.unreadable),
        }


def carve_validation(train: SplitArrays, fraction: float, seed: int) -> tuple[SplitArrays, SplitArrays]:
    """Deterministic, stratified ``(train, val)`` split of ``train``."""
    if not 0.0 < fraction < 1.0:
        raise EdgeDetectError(f"--val-fraction must be between 0 and 1 (exclusive); received {fraction}")
    rng = np.random.default_rng(seed)
    val_idx = []
    for label in (0, 1):
        idx = np.flatnonzero(train.y == label)
        n_val = int(round(fraction * len(idx)))
        val_idx.append(rng.permutation(idx)[:n_val])
    is_val = np.zeros(len(train), bool)
    is_val[np.concatenate(val_idx)] = True
    return train.subset(np.flatnonzero(~is_val)), train.subset(np.flatnonzero(is_val))


def cache_dir() -> Path:
    """Where decoded arrays are cached: ``$EDGEDETECT_CACHE`` or ``~/.cache/edgedetect``."""
    return Path(os.environ.get("EDGEDETECT_CACHE", Path.home() / ".cache" / "edgedetect"))


def _cache_key(path: Path, img_size: int) -> str:
    stat = path.stat()
    ident = {
        "source": str(path.resolve()),
        "size": stat.st_size,
        "mtime": stat.st_mtime_ns,
        "img_size": img_size,
        "preprocessing": PREPROCESSING,
        "version": _CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _decode_all(path: Path, img_size: int, progress: bool) -> tuple[dict[str, SplitArrays], list, list]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    arrays: dict[str, list] = {}
    unreadable: list[tuple[str, str]] = []
    unlabelled: list[str] = []
    columns = (TextColumn("decoding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task(path.name, total=None)
        for relpath, data in iter_files(path):
            bar.advance(task)
            split, label = classify(relpath)
            if label is None:
                unlabelled.append(relpath)
                continue
            try:
                img = load_image(data, img_size)
            except ImageError as e:
                unreadable.append((relpath, str(e).replace("<bytes>: ", "", 1)))
                continue
            xs, ys, ps = arrays.setdefault(split or NO_SPLIT, ([], [], []))
            xs.append(img)
            ys.append(label)
            ps.append(relpath)
    splits = {
        name: SplitArrays(np.stack(xs), np.asarray(ys, np.int8), ps)
        for name, (xs, ys, ps) in sorted(arrays.items(), key=lambda kv: SPLITS.index(kv[0]))
    }
    return splits, unreadable, unlabelled


def _check_layout(path: Path, splits: dict[str, SplitArrays], unlabelled: list[str]) -> None:
    if not splits:
        found = ", ".join(sorted({str(PurePosixPath(p).parent) for p in unlabelled})[:8]) or "no image files"
        raise EdgeDetectError(
            f"{path}: no class folders found (found: {found}). Put images in REAL/FAKE (or real/fake, 0/1, "
            "nature/ai) folders, optionally under train/val/test."
        )
    for name, split in splits.items():
        missing = [label for label, n in split.counts().items() if n == 0]
        if missing:
            raise EdgeDetectError(
                f"{path}: split '{name}' has only one class ({split.counts()}); a detector needs both REAL and FAKE images."
            )


def load_dataset(
    path: str | os.PathLike,
    img_size: int,
    val_fraction: float = 0.1,
    seed: int = 0,
    use_cache: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load a dataset into memory as uint8 arrays, decoding through the runtime's preprocessing.

    Args:
        path: folder or archive (see the module docstring for layouts).
        img_size: side of the square arrays.
        val_fraction: share of train carved into ``val`` (stratified, seeded) when the dataset has no val split.
        seed: seed of that carve.
        use_cache: read/write decoded arrays in :func:`cache_dir`.
        progress: show a progress bar while decoding.

    Raises:
        EdgeDetectError: missing path, unknown format, no class folders, or a split holding one class only.
    """
    path = Path(path)
    archive_kind(path)
    cache_file = cache_dir() / f"{path.name}-{img_size}px-{_cache_key(path, img_size)}.npz" if use_cache else None
    if cache_file is not None and cache_file.exists() and path.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            names = [str(n) for n in z["splits"]]
            splits = {n: SplitArrays(z[f"x_{n}"], z[f"y_{n}"], [str(p) for p in z[f"paths_{n}"]]) for n in names}
            unreadable = [tuple(map(str, row)) for row in z["unreadable"].reshape(-1, 2)]
        unlabelled: list[str] = []
    else:
        splits, unreadable, unlabelled = _decode_all(path, img_size, progress)
        _check_layout(path, splits, unlabelled)
        # Folders change without their mtime changing, so only archives are cached.
        if cache_file is not None and path.is_file():
            _write_cache(cache_file, splits, unreadable)
    _check_layout(path, splits, unlabelled)
    dataset = Dataset(str(path), img_size, splits, unreadable)
    if "val" not in splits and "train" in splits:
        splits["train"], splits["val"] = carve_validation(splits["train"], val_fraction, seed)
        dataset.val_carved = True
        dataset.splits = {n: splits[n] for n in SPLITS if n in splits}
    return dataset


def _write_cache(cache_file: Path, splits: dict[str, SplitArrays], unreadable: list[tuple[str, str]]) -> None:
    payload = {"splits": np.array(list(splits))}
    for name, s in splits.items():
        payload.update({f"x_{name}": s.x, f"y_{name}": s.y, f"paths_{name}": np.array(s.paths)})
    payload["unreadable"] = np.array(unreadable, dtype=str).reshape(-1, 2)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **payload)
        os.replace(tmp, cache_file)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache that cannot be written only costs time
