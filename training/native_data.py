"""Training data at native resolution: several sources, every image at its own pixels, random crops per batch.

A source is a folder or archive with class folders (see :mod:`edgedetect.data`), optionally followed by ``@RxC``
when each of its files is an R x C grid of separate generations (``sd15.tar.gz@2x2``): such a file is split into
its tiles, and a crop never crosses a seam. Images are decoded once with the runtime's
:func:`edgedetect.preprocess.open_image` and kept as uint8 arrays; a side longer than :data:`MAX_SIDE` is
centre-*cropped* to it (never resized), which bounds memory while keeping the pixels the detector looks at.

Validation is carved per source and class, by file (the tiles of one grid stay together), so a source's val
images were never seen in training. Each batch samples images class-balanced, and within a class each source with
weight sqrt(its count), then takes one random crop of each at an offset aligned like the runtime's crops
(:data:`edgedetect.preprocess.CROP_ALIGN`), and augments it identically for both classes.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from edgedetect.archives import Scan, progress_bar
from edgedetect.layout import Layout
from edgedetect.errors import EdgeDetectError
from edgedetect.crops import CROP_ALIGN, native_crops, pad_to
from edgedetect.preprocess import open_image

MAX_SIDE = 768
_GRID = re.compile(r"^(?P<path>.+)@(?P<rows>[1-9])x(?P<cols>[1-9])$")


@dataclass(frozen=True)
class Source:
    """One ``--data`` argument: a path and the grid its files are made of (1x1: plain images)."""

    path: Path
    rows: int = 1
    cols: int = 1

    @classmethod
    def parse(cls, text: str) -> "Source":
        m = _GRID.match(text)
        if m and not Path(text).exists():
            return cls(Path(m["path"]), int(m["rows"]), int(m["cols"]))
        return cls(Path(text))

    @property
    def name(self) -> str:
        """``faces`` for ``.../faces.tar.gz``: how results name the source."""
        return re.sub(r"\.(tar\.gz|tgz|tar|zip)$", "", self.path.name)

    def __str__(self) -> str:
        return f"{self.path}@{self.rows}x{self.cols}" if (self.rows, self.cols) != (1, 1) else str(self.path)


@dataclass
class NativeSet:
    """Images of several sources at native resolution, with label, source and file of each."""

    images: list = field(default_factory=list)
    y: list = field(default_factory=list)
    source: list = field(default_factory=list)
    file: list = field(default_factory=list)  # "<source>/<relpath>", shared by the tiles of one grid

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "NativeSet":
        return NativeSet([self.images[i] for i in idx], [self.y[i] for i in idx], [self.source[i] for i in idx],
                         [self.file[i] for i in idx])

    def counts(self) -> dict:
        """``{source: {"REAL": n, "FAKE": n}}`` (classes with no image left out)."""
        out: dict = {}
        for s, y in zip(self.source, self.y):
            key = ("REAL", "FAKE")[y]
            out.setdefault(s, {}).setdefault(key, 0)
            out[s][key] += 1
        return out

    def sizes(self) -> dict:
        """Min, median and max of the shorter and longer side (after tiling and the MAX_SIDE crop)."""
        short = np.array([min(a.shape[:2]) for a in self.images]) if self.images else np.zeros(1)
        long = np.array([max(a.shape[:2]) for a in self.images]) if self.images else np.zeros(1)
        return {"short_side": [int(short.min()), int(np.median(short)), int(short.max())],
                "long_side": [int(long.min()), int(np.median(long)), int(long.max())]}


def _centre_crop(arr: np.ndarray, side: int) -> np.ndarray:
    h, w = arr.shape[:2]
    top = max(0, (h - side) // 2) // CROP_ALIGN * CROP_ALIGN
    left = max(0, (w - side) // 2) // CROP_ALIGN * CROP_ALIGN
    return np.ascontiguousarray(arr[top : top + side, left : left + side])


def _tiles(arr: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    h, w = arr.shape[:2]
    th, tw = h // rows, w // cols
    return [arr[r * th : (r + 1) * th, c * tw : (c + 1) * tw] for r in range(rows) for c in range(cols)]


def load_sources(sources: list[str], progress: bool = True) -> tuple[NativeSet, list[tuple[str, str]]]:
    """Decode every labelled image of ``sources`` at native resolution.

    Returns:
        ``(images, problems)``: the set, and ``(file, problem)`` for every file that could not be used.

    Raises:
        EdgeDetectError: a source that is missing, not a dataset, or has no labelled image.
    """
    out, problems = NativeSet(), []
    names = [Source.parse(s).name for s in sources]
    if len(set(names)) != len(names):
        raise EdgeDetectError(f"--data: two sources share a name ({', '.join(names)}); results are reported per "
                              "source name, so rename or merge them")
    for text in sources:
        src = Source.parse(text)
        scan, layout, before = Scan(src.path), Layout(), len(out)
        with progress_bar("decoding", scan, enabled=progress) as tick:
            for relpath, data, problem in scan:
                tick()
                where = f"{src.path}/{relpath}"
                placed = layout.add(relpath)
                if placed is None:
                    continue
                if problem is not None:
                    problems.append((where, problem))
                    continue
                try:
                    arr = np.asarray(open_image(data), np.uint8)
                except EdgeDetectError as e:
                    problems.append((where, str(e).removeprefix("<bytes>: ")))
                    continue
                for tile in _tiles(arr, src.rows, src.cols):
                    out.images.append(_centre_crop(tile, MAX_SIDE))
                    out.y.append(placed[1])
                    out.source.append(src.name)
                    out.file.append(f"{src.name}/{relpath}")
        if len(out) == before:
            raise EdgeDetectError(f"{src.path}: no labelled images (expected REAL/ and/or FAKE/ folders inside)")
        layout_problems = layout.problems()
        if layout_problems:
            raise EdgeDetectError(f"{src.path}: " + "; ".join(layout_problems))
    return out, problems


def carve_val(data: NativeSet, fraction: float, seed: int) -> tuple[NativeSet, NativeSet]:
    """Split by file, per (source, class): ``fraction`` of each group's files (at least one) go to val."""
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for i, (s, y, f) in enumerate(zip(data.source, data.y, data.file)):
        groups.setdefault((s, y), {}).setdefault(f, []).append(i)
    train_idx, val_idx = [], []
    for key in sorted(groups):
        files = sorted(groups[key])
        chosen = set(rng.permutation(len(files))[: max(1, round(fraction * len(files)))]) if len(files) > 1 else set()
        for j, f in enumerate(files):
            (val_idx if j in chosen else train_idx).extend(groups[key][f])
    return data.subset(sorted(train_idx)), data.subset(sorted(val_idx))


def run_val(settings: dict) -> NativeSet:
    """A crops run's val split, carved again exactly as training carved it (its sources, ``val_fraction``, ``seed``)."""
    data, _ = load_sources(settings["data"], progress=False)
    return carve_val(data, settings["val_fraction"], settings["seed"])[1]


@dataclass(frozen=True)
class Augment:
    """What is done to every training crop, whatever its class (written to the run's config).

    Attributes:
        jpeg: probability of re-encoding the crop as JPEG, at a quality drawn from ``codec_quality``.
        webp: probability of re-encoding it as lossy WebP instead (one draw picks JPEG, WebP or neither), so a
            codec that one class's sources happen to use (the shared sd15 grids are all WebP) is in both classes.
        flip: horizontal flips; rot90: rotations by multiples of 90 degrees (neither resamples a pixel).
        gamma: maximal |log2 gamma| of a random tone curve (0 = off).
        jitter: colour jitter, the largest relative change of brightness, contrast and saturation (0 = off; SAFE,
            Li et al. 2025, use 0.5).
        mask: probability of blanking random SQUARE-px squares covering U[0, 0.75] of the crop (SAFE's
            RandomMask): the detector cannot lean on one region's content. Squares sit on the 2x2 grid, so their
            edges add no nearest-neighbour upsampling trace of their own.
        shuffle: probability of permuting the crop's SQUARE-px squares: a trace of upsampling lives inside
            a square and survives (the squares sit on the 2x2 grid, so the NPR residual is permuted exactly), while
            the content larger than a square, what a small training set lets a model lean on, is scrambled.
    """

    jpeg: float = 0.5
    webp: float = 0.0
    codec_quality: tuple = (60, 100)
    flip: bool = True
    rot90: bool = True
    gamma: float = 0.25
    jitter: float = 0.0
    mask: float = 0.0
    shuffle: float = 0.0

    def describe(self) -> list[str]:
        out = []
        low, high = self.codec_quality
        if self.jpeg:
            out.append(f"JPEG re-encode p={self.jpeg:g} q~U[{low},{high}]")
        if self.webp:
            out.append(f"WebP re-encode p={self.webp:g} q~U[{low},{high}]")
        if self.flip:
            out.append("horizontal flip p=0.5")
        if self.rot90:
            out.append("rot90 k~U{0..3}")
        if self.gamma:
            out.append(f"gamma 2^U[-{self.gamma:g},{self.gamma:g}]")
        if self.jitter:
            out.append(f"brightness, contrast and saturation x U[{1 - self.jitter:g},{1 + self.jitter:g}]")
        if self.mask:
            out.append(f"mask p={self.mask:g}: {SQUARE}-px squares over U[0,{MASK_RATIO:g}] of the crop")
        if self.shuffle:
            out.append(f"shuffle p={self.shuffle:g}: the crop's {SQUARE}-px squares permuted")
        return out


NO_AUGMENT = Augment(jpeg=0.0, flip=False, rot90=False, gamma=0.0)
SQUARE = 16  # side of the squares that masking blanks and shuffling permutes (a multiple of the 2x2 NPR grid)
MASK_RATIO = 0.75


def random_crop(arr: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """One crop at an aligned random offset (mirror-padded first when the image is smaller)."""
    if arr.shape[0] < crop or arr.shape[1] < crop:
        arr = pad_to(arr, crop)
    h, w = arr.shape[:2]
    top = rng.integers(0, (h - crop) // CROP_ALIGN + 1) * CROP_ALIGN
    left = rng.integers(0, (w - crop) // CROP_ALIGN + 1) * CROP_ALIGN
    return arr[top : top + crop, left : left + crop]


def augment_crop(x: np.ndarray, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    if aug.gamma:
        g = 2.0 ** rng.uniform(-aug.gamma, aug.gamma)
        lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** g), 0, 255).astype(np.uint8)
        x = lut[x]
    if aug.jitter:
        x = colour_jitter(x, aug.jitter, rng)
    if aug.jpeg or aug.webp:
        u = rng.random()
        codec = "JPEG" if u < aug.jpeg else "WEBP" if u < aug.jpeg + aug.webp else None
        if codec:
            buf = io.BytesIO()
            Image.fromarray(x).save(buf, codec, quality=int(rng.integers(aug.codec_quality[0], aug.codec_quality[1] + 1)))
            x = np.asarray(Image.open(buf).convert("RGB"))
    if aug.flip and rng.random() < 0.5:
        x = x[:, ::-1]
    if aug.rot90:
        x = np.rot90(x, int(rng.integers(0, 4)))
    x = np.ascontiguousarray(x)
    if aug.shuffle and rng.random() < aug.shuffle:
        x = shuffle_squares(x, rng)
    if aug.mask and rng.random() < aug.mask:
        x = random_mask(x, rng)
    return x


def shuffle_squares(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` with its whole SQUARE-px squares in a random order (a margin that is not a whole square stays)."""
    rows, cols = x.shape[0] // SQUARE, x.shape[1] // SQUARE
    h, w = rows * SQUARE, cols * SQUARE
    grid = x[:h, :w].reshape(rows, SQUARE, cols, SQUARE, -1).transpose(0, 2, 1, 3, 4)  # (rows, cols, sq, sq, ch)
    squares = grid.reshape(rows * cols, SQUARE, SQUARE, -1)[rng.permutation(rows * cols)]
    out = x.copy()
    out[:h, :w] = squares.reshape(rows, cols, SQUARE, SQUARE, -1).transpose(0, 2, 1, 3, 4).reshape(h, w, -1)
    return out


def colour_jitter(x: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by U[1 - strength, 1 + strength], in a random order."""
    y = x.astype(np.float32)
    luma = np.float32([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's convert("L")
    for op in rng.permutation(3):
        f = rng.uniform(1 - strength, 1 + strength)
        if op == 0:
            y = y * f
        elif op == 1:
            mean = float((y @ luma).mean())
            y = mean + f * (y - mean)
        else:
            grey = (y @ luma)[..., None]
            y = grey + f * (y - grey)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def random_mask(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` with distinct SQUARE-px squares of the grid set to 0, covering U[0, MASK_RATIO] of it."""
    rows, cols = x.shape[0] // SQUARE, x.shape[1] // SQUARE
    n = int(rows * cols * rng.uniform(0, MASK_RATIO))
    if n == 0:
        return x
    x = x.copy()
    for cell in rng.choice(rows * cols, size=n, replace=False):
        r, c = divmod(int(cell), cols)
        x[r * SQUARE : (r + 1) * SQUARE, c * SQUARE : (c + 1) * SQUARE] = 0
    return x


_UPSAMPLERS = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


def synthetic_fake(arr: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """A FAKE training crop made from a REAL image: a crop of half the size upsampled 2x (nearest, bilinear or
    bicubic), then smoothed by a random near-identity 3x3 filter, as a generator's upsampling layer and the
    convolution after it would leave it (the idea of Zhang et al. 2019, "AutoGAN", without training a generator).
    The detector learns upsampling traces that no particular generator owns, not the content of FAKE sources."""
    half = random_crop(arr, crop // 2, rng)
    up = np.asarray(Image.fromarray(half).resize((crop, crop), _UPSAMPLERS[rng.integers(len(_UPSAMPLERS))]), np.float32)
    k = np.zeros((3, 3), np.float32)
    k[1, 1] = 1.0
    k += rng.normal(0, 0.08, (3, 3)).astype(np.float32)
    k /= k.sum()
    padded = np.pad(up, ((1, 1), (1, 1), (0, 0)), mode="edge")
    out = sum(k[i, j] * padded[i : i + crop, j : j + crop] for i in range(3) for j in range(3))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def sampling_weights(data: NativeSet) -> np.ndarray:
    """Per-image probability: half the mass per class, within a class each source by sqrt(count), uniform inside."""
    y, src = np.asarray(data.y), np.asarray(data.source)
    w = np.zeros(len(y))
    for label in (0, 1):
        in_class = y == label
        names, counts = np.unique(src[in_class], return_counts=True)
        if not len(names):
            continue
        share = np.sqrt(counts) / np.sqrt(counts).sum()
        for name, n, s in zip(names, counts, share):
            w[in_class & (src == name)] = 0.5 * s / n
    return w / w.sum()


def fixed_crops(data: NativeSet, crop: int, max_crops: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runtime's deterministic crops of every image: ``(crops, image index of each crop, labels per image)``."""
    crops, owner = [], []
    for i, arr in enumerate(data.images):
        c, _, _ = native_crops(arr, crop, max_crops)
        crops.append(c)
        owner.append(np.full(len(c), i))
    return np.concatenate(crops), np.concatenate(owner), np.asarray(data.y)


def steps_for(data: NativeSet, batch_size: int) -> int:
    """Default steps per epoch: about one crop per image per epoch, and at least 50 steps."""
    return max(50, math.ceil(len(data) / batch_size))
