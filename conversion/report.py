"""What a conversion reports: each written file, and how it agrees with the source model on the check images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from conversion.calibration import CalibrationSet


@dataclass
class OutputReport:
    """One written file and how it compares with the source model."""

    precision: str
    path: Path
    size_bytes: int
    io: str
    delegate_partitions: Optional[int] = None
    max_abs_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    flips: Optional[int] = None
    n_checked: int = 0
    accuracy: Optional[float] = None
    float_ops: dict = field(default_factory=dict)

    @property
    def agreement(self) -> Optional[float]:
        return None if self.flips is None or not self.n_checked else 1.0 - self.flips / self.n_checked


@dataclass
class ConversionReport:
    """What :func:`convert` did: the source, the calibration set and one :class:`OutputReport` per file."""

    source: Path
    arch: str
    input_size: int
    threshold: float
    outputs: list[OutputReport]
    fp32_size: int
    calibration: Optional[dict] = None
    reference_accuracy: Optional[float] = None
    debug_csv: Optional[Path] = None
    debug_rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [o.path for o in self.outputs]


def check_agreement(out: OutputReport, ref: np.ndarray, calib: CalibrationSet, threshold: float) -> None:
    """Run ``out.path`` with the interpreter-only runtime on ``calib.x`` and record how far it is from ``ref`` (the
    source model's p_fake): max and mean |Δp|, label flips at ``threshold``, accuracy when ``calib`` is labelled."""
    from edgedetect.runtime import Classifier

    clf = Classifier(out.path)
    p = clf.predict(calib.x)
    diff = np.abs(p - ref)
    out.max_abs_diff, out.mean_abs_diff = float(diff.max()), float(diff.mean())
    out.flips, out.n_checked = int(((p >= threshold) != (ref >= threshold)).sum()), len(p)
    if calib.y is not None:
        out.accuracy = float(((p >= threshold) == (calib.y == 1)).mean())
