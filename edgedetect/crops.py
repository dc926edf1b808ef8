"""Native-resolution input: the crops a photo model sees, and the rule that turns their scores into one.

A 32-px model takes the whole image resized (:func:`edgedetect.preprocess.to_array`); a native-resolution model
(metadata ``preprocessing.mode == "crops"``) takes square crops of the image at its own pixels, never resampled,
laid out by :func:`crop_boxes`, and its per-image p_fake is :func:`combine` of the crops' p_fake. Training,
calibration, evaluation, predict, bench and explain all call these, so the crops are the same everywhere.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# Crop offsets are multiples of CROP_ALIGN, so every crop keeps the image's 8x8 JPEG block grid and 2x2 upsampling
# grid in the same phase (the traces a residual front end looks for), at training and at inference alike.
CROP_ALIGN = 8
DEFAULT_MAX_CROPS = 16


def crop_boxes(width: int, height: int, crop: int, max_crops: int = DEFAULT_MAX_CROPS) -> list[tuple[int, int, int, int]]:
    """The deterministic crops that cover a ``width`` x ``height`` image: ``(left, top, right, bottom)`` boxes.

    A grid of ``ceil(W / crop) x ceil(H / crop)`` crops, spread evenly from edge to edge (neighbours overlap when the
    side is not a multiple of ``crop``), thinned to at most ``max_crops`` by dropping a column or a row at a time from
    the direction that has more. Offsets are rounded down to multiples of :data:`CROP_ALIGN`. A side shorter than ``crop`` gets
    one crop starting at 0 (the caller pads it; see :func:`native_crops`).
    """
    if crop <= 0 or max_crops <= 0:
        raise ValueError("crop and max_crops must be positive")

    def offsets(side: int, n: int) -> list[int]:
        span = side - crop
        if span <= 0:
            return [0]
        n = min(n, span // CROP_ALIGN + 1)  # no two crops at the same aligned offset
        if n == 1:
            return [(span // 2) // CROP_ALIGN * CROP_ALIGN]
        return sorted({round(i * span / (n - 1)) // CROP_ALIGN * CROP_ALIGN for i in range(n)})

    nx, ny = max(1, math.ceil(width / crop)), max(1, math.ceil(height / crop))
    while nx * ny > max_crops:  # thin the direction with more crops (the longer side on a tie)
        if nx > ny or (nx == ny and width >= height):
            nx -= 1
        else:
            ny -= 1
    return [(x, y, x + crop, y + crop) for y in offsets(height, ny) for x in offsets(width, nx)]


def pad_to(arr: np.ndarray, crop: int) -> np.ndarray:
    """``arr`` (H, W, 3) mirrored out to at least ``crop`` x ``crop`` (bottom and right), then cut to it there."""
    h, w = arr.shape[:2]
    while h < crop or w < crop:  # symmetric padding can at most double a side per pass
        arr = np.pad(arr, ((0, max(0, min(crop - h, h))), (0, max(0, min(crop - w, w))), (0, 0)), mode="symmetric")
        h, w = arr.shape[:2]
    return arr


def native_crops(img: Image.Image | np.ndarray, crop: int, max_crops: int = DEFAULT_MAX_CROPS
                 ) -> tuple[np.ndarray, list[tuple[int, int, int, int]], bool]:
    """The crops a native-resolution model sees: uint8 ``(N, crop, crop, 3)``, their boxes, and whether it was padded.

    No pixel is resampled. An image smaller than ``crop`` on a side is mirror-padded to it (``padded`` is True, and
    the result should say so: the model never saw such an input in training).
    """
    w, h = img.size if isinstance(img, Image.Image) else img.shape[1::-1]
    boxes = crop_boxes(w, h, crop, max_crops)
    padded = h < crop or w < crop
    out = np.empty((len(boxes), crop, crop, 3), np.uint8)
    if isinstance(img, Image.Image) and not padded:  # cut the crops out of the image; no copy of a 12-MP array
        for i, box in enumerate(boxes):
            out[i] = np.asarray(img.crop(box), dtype=np.uint8)
        return out, boxes, padded
    arr = np.asarray(img, dtype=np.uint8)
    if padded:
        arr = pad_to(arr, crop)
    for i, (left, top, right, bottom) in enumerate(boxes):
        out[i] = arr[top:bottom, left:right]
    return out, boxes, padded


# p_fake is clipped to [EPS, 1 - EPS] before its logit is taken: half the step of an int8 output (scale 1/256), so an
# int8 file's exact 0 and a float file's 1e-5 weigh the same in a mean of logits instead of -13.8 against -11.5.
LOGIT_EPS = 1 / 512


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p / (1 - p))


# How per-crop p_fake become one per image. Which one a model uses is chosen on its validation set at training
# time (every rule's val figures are in the run's metrics.json) and written to its metadata.
COMBINE_RULES = {
    "mean": lambda p: float(np.mean(p)),
    "mean_logit": lambda p: float(1 / (1 + np.exp(-np.mean(_logit(p))))),
    "max": lambda p: float(np.max(p)),
}


def combine(p_crops, rule: str) -> float:
    """One p_fake from the p_fake of an image's crops, by a :data:`COMBINE_RULES` rule."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown combine rule {rule!r}; valid: {', '.join(COMBINE_RULES)}")
    return COMBINE_RULES[rule](np.asarray(p_crops, np.float64))


def combine_all(p_crops: np.ndarray, owner: np.ndarray, n: int, rule: str) -> np.ndarray:
    """Per-image p_fake for ``n`` images from crop scores and the image index of each crop."""
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n + 1))
    return np.array([combine(p_crops[order[a:b]], rule) for a, b in zip(bounds[:-1], bounds[1:])])
