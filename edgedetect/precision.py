"""The precisions a model is converted to, one table row each: conversion, metadata, bench and plots read the row.

A row names the precision as the CLI and the metadata spell it, the suffix its file names carry
(``model_int8.tflite``), the converter recipe that makes it, whether that recipe needs calibration images, the
precision its drift is measured against (bench compares a model with that sibling of its family) and the colour
it is drawn in. No numpy or TensorFlow here: the runtime reads this table too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgedetect.errors import EdgeDetectError


@dataclass(frozen=True)
class Precision:
    """One precision.

    Attributes:
        name: as written on the CLI (``--quant``) and in the metadata's ``precision``.
        suffix: what the file name's stem ends with (``_int8``).
        recipe: the converter recipe (:mod:`conversion.recipes` keys on ``name``), in words.
        needs_calibration: the recipe needs representative images (full-integer int8).
        reference: the precision this one's drift is measured against; None: it is the reference.
        color: its colour in plots.
    """

    name: str
    suffix: str
    recipe: str
    needs_calibration: bool
    reference: Optional[str]
    color: str

    def file_name(self, stem: str) -> str:
        """``model`` -> ``model_int8.tflite``."""
        return f"{stem}{self.suffix}.tflite"


TABLE = (
    Precision("fp32", "_fp32", "float32 weights and activations (builtin ops only)", False, None, "#1565c0"),
    Precision("fp16", "_fp16", "float16 weights, float32 compute", False, "fp32", "#6a1b9a"),
    Precision("dynamic", "_dynamic", "dynamic range: int8 weights, float activations", False, "fp32", "#ef6c00"),
    Precision("int8", "_int8", "full integer: int8 weights and activations, calibrated on real images", True, "fp32",
              "#2e7d32"),
)
BY_NAME = {p.name: p for p in TABLE}
PRECISIONS = tuple(BY_NAME)  # in conversion order: fp32 first, the reference size and the ops int8 inspects
REFERENCE = "fp32"  # the float reference: converted first (the size and ops others are measured by); drift is against it
# Input/output tensor types of an int8 file (float keeps float I/O around the integer graph).
IO_TYPES = ("float", "int8", "uint8")
UNKNOWN_COLOR = "#616161"


def get_precision(name: str) -> Precision:
    """The row of ``name``.

    Raises:
        EdgeDetectError: an unknown name (the message lists the valid ones).
    """
    try:
        return BY_NAME[name]
    except KeyError:
        raise EdgeDetectError(f"precision {name!r}: unknown; valid are {', '.join(PRECISIONS)}") from None


def split_stem(stem: str) -> tuple[str, Optional[Precision]]:
    """``model_int8`` -> ``("model", int8 row)``; a stem without a precision suffix -> ``(stem, None)``."""
    for p in TABLE:
        if stem.endswith(p.suffix):
            return stem[: -len(p.suffix)], p
    return stem, None


def color_of(name: str) -> str:
    """The plot colour of precision ``name`` (grey for one the table does not know)."""
    row = BY_NAME.get(name)
    return row.color if row is not None else UNKNOWN_COLOR
