"""Perturbations for the robustness pass: ``jpeg:Q``, ``resize:F``, ``blur:R`` applied in memory to a decoded image."""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image, ImageFilter

from edgedetect.errors import EdgeDetectError
from edgedetect.preprocess import RESAMPLE, open_image, to_array

PERTURB_HELP = ("jpeg:Q (re-encode at JPEG quality Q, 1-100), resize:F (downscale by 0 < F < 1), "
                "blur:R (Gaussian radius R > 0)")


@dataclass(frozen=True)
class Perturbation:
    """One in-memory change applied to a decoded image before the usual crop and resize."""

    kind: str  # jpeg, resize or blur
    value: float

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value:g}"

    def apply(self, img: Image.Image) -> Image.Image:
        """The perturbed RGB image (same mode; ``resize`` makes it smaller)."""
        if self.kind == "jpeg":
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=int(self.value))
            return open_image(buf.getvalue())
        if self.kind == "resize":
            w, h = img.size
            return img.resize((max(1, round(w * self.value)), max(1, round(h * self.value))), RESAMPLE)
        return img.filter(ImageFilter.GaussianBlur(self.value))


def parse_perturbations(spec: str | None) -> list[Perturbation]:
    """``"jpeg:50,resize:0.5,blur:1.0"`` -> perturbations, in order, without repeats.

    Raises:
        EdgeDetectError: an unknown kind or a value out of range, naming the valid forms.
    """
    if spec is None:
        return []
    found: list[Perturbation] = []
    for part in (p.strip() for p in spec.split(",")):
        kind, sep, raw = part.partition(":")
        kind = kind.strip().lower()
        try:
            value = float(raw) if sep else math.nan
        except ValueError:
            value = math.nan
        ok = {
            "jpeg": value == int(value) and 1 <= value <= 100 if math.isfinite(value) else False,
            "resize": 0 < value < 1,
            "blur": 0 < value <= 100,
        }.get(kind, False)
        if not ok:
            raise EdgeDetectError(f"--perturb {spec!r}: cannot use {part!r}; valid: {PERTURB_HELP}, "
                                  "comma-separated, e.g. --perturb jpeg:50,resize:0.5,blur:1.0")
        p = Perturbation(kind, value)
        if p not in found:
            found.append(p)
    return found


def load_perturbed(source: Union[str, os.PathLike, bytes], size: int,
                   perturbation: Perturbation | None = None) -> np.ndarray:
    """:func:`edgedetect.preprocess.load_image` with ``perturbation`` applied between decoding and resizing."""
    img = open_image(source)
    if perturbation is not None:
        img = perturbation.apply(img)
    return to_array(img, size)
