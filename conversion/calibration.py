"""Calibration and check images: a seeded, class-balanced sample decoded by the runtime's own preprocessing (or,
for a native-resolution model, the runtime's crops), and where it comes from when no ``--calib`` is given."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgedetect import LABELS
from edgedetect.errors import EdgeDetectError, ImageError
from edgedetect.sampling import balanced_sample, limit_sample
from training.run import Run

DEFAULT_NUM_CALIB = 300
MIN_SENSIBLE_CALIB = 100  # fewer images give activation ranges that clip unseen inputs
CALIB_SEED = 0


@dataclass
class CalibrationSet:
    """The calibration images (uint8, runtime preprocessing) and where they came from."""

    x: np.ndarray
    y: Optional[np.ndarray]
    source: str
    split: str
    available: int
    seed: int
    preprocessing: str = "edgedetect.preprocess.load_image (the runtime's), raw RGB 0-255"

    def counts(self) -> dict:
        if self.y is None:
            return {"unlabelled": int(len(self.x))}
        return {label: int((self.y == i).sum()) for i, label in enumerate(LABELS)}

    def describe(self) -> dict:
        return {
            "source": self.source,
            "split": self.split,
            "n": int(len(self.x)),
            "per_class": self.counts(),
            "available": self.available,
            "sampling": "equal numbers per class where available, drawn with numpy default_rng(seed)",
            "seed": self.seed,
            "preprocessing": self.preprocessing,
        }


def _labelled_folder(path: Path) -> bool:
    from edgedetect.layout import classify
    from edgedetect.listing import list_folder

    return any(classify(f.relpath)[1] is not None for f in list_folder(path))


def load_calibration(source: str | os.PathLike, input_size: int, n: int, seed: int = CALIB_SEED,
                     progress: bool = False) -> CalibrationSet:
    """``n`` calibration images from a dataset (its train split, or all splits when it has none) or a plain folder.

    Raises:
        EdgeDetectError: missing source, no images, or an archive without REAL/FAKE class folders.
    """
    from edgedetect.data import load_dataset
    from edgedetect.listing import list_folder
    from edgedetect.preprocess import load_image

    path = Path(source)
    if not path.exists():
        raise EdgeDetectError(f"calibration data {path} not found; pass --calib with a dataset folder/.tar.gz/.zip "
                              "(REAL/FAKE class folders) or a folder of images")
    if path.is_dir() and not _labelled_folder(path):
        files = [f.path for f in list_folder(path)]  # the one lister: loop-safe, each folder once
        if not files:
            raise EdgeDetectError(f"calibration data {path}: no image files in it")
        idx = limit_sample(len(files), n, seed=seed)
        images = []
        for i in idx:
            try:
                images.append(load_image(files[i], input_size))
            except ImageError:
                continue  # an unreadable file is simply not used for calibration
        if not images:
            raise EdgeDetectError(f"calibration data {path}: none of the sampled images could be read")
        return CalibrationSet(np.stack(images), None, str(path), "all (plain image folder)", len(files), seed)
    dataset = load_dataset(path, input_size, progress=progress)
    if "train" in dataset.splits:
        split_name, split = "train", dataset.splits["train"]
    else:
        names = list(dataset.splits)
        split_name = "+".join(names)
        split = dataset.splits[names[0]]
        for other in names[1:]:
            s = dataset.splits[other]
            split = type(split)(np.concatenate([split.x, s.x]), np.concatenate([split.y, s.y]), split.paths + s.paths)
    idx = balanced_sample(split.y, n, seed)
    return CalibrationSet(split.x[idx], split.y[idx].astype(int), str(path), split_name, len(split), seed)


def load_crop_calibration(sources: list, crop: int, n: int, max_crops: int, seed: int = CALIB_SEED,
                          progress: bool = False) -> CalibrationSet:
    """``n`` calibration crops for a native-resolution model: the runtime's crops of images drawn class-balanced
    from the run's sources (the same :func:`edgedetect.crops.native_crops` that predict uses)."""
    from training.native_data import fixed_crops, load_sources

    data, _ = load_sources(list(sources), progress=progress)
    images = data.subset(balanced_sample(np.asarray(data.y), n, seed))
    x, owner, y = fixed_crops(images, crop, max_crops)
    idx = limit_sample(len(x), n, seed=seed)
    calib = CalibrationSet(x[idx], y[owner[idx]].astype(int), ", ".join(map(str, sources)), "all sources", len(data), seed)
    calib.preprocessing = (f"edgedetect.crops.native_crops ({crop}-px crops at native resolution, up to {max_crops} "
                           f"per image), raw RGB 0-255; {n} crops from {len(images)} images")
    return calib


def calibration_source(calib: Optional[str], run: Optional[Run], int8: bool) -> tuple[Optional[Path], Optional[str]]:
    """``(path, where it came from)`` of the calibration/check images: ``calib``, else the run's training data.

    Raises:
        EdgeDetectError: int8 without images, or a source that does not exist.
    """
    calib_source, calib_origin = (Path(calib), "--calib") if calib else (None, None)
    if calib_source is None and run is not None:
        calib_source = run.data_path()
        calib_origin = "the run's training data"
        if calib_source is None and int8:
            raise EdgeDetectError(f"the run's training data ({run.settings.get('data')}) is not found from here; "
                                  "int8 needs calibration images: pass --calib DATA")
    if int8 and calib_source is None:
        raise EdgeDetectError(f"int8 needs calibration data and none was given: pass --calib with a dataset "
                              f"(folder/.tar.gz/.zip with REAL/FAKE folders) or a folder of images, "
                              f"~{DEFAULT_NUM_CALIB} of which are used; int8 is never calibrated on random noise")
    if calib_source is not None and not calib_source.exists():
        raise EdgeDetectError(f"calibration data {calib_source} not found; pass --calib with a dataset folder/"
                              ".tar.gz/.zip (REAL/FAKE class folders) or a folder of images")
    return calib_source, calib_origin

