"""The models a bench measures: the shipped ones, and each one's fp32 reference of the same family."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from edgedetect.precision import BY_NAME, REFERENCE, split_stem


def shipped_models() -> list[Path]:
    """The .tflite files installed in the ``edgedetect.models`` package (the repository's ``models/``)."""
    root = Path(str(resources.files("edgedetect.models")))
    return sorted(root.glob("*.tflite"))


def model_precision(model: Path) -> str:
    """``model``'s precision: its metadata's, else the file name's suffix (``x_int8.tflite``), else ``unknown``."""
    from edgedetect.metadata import read_metadata

    meta = read_metadata(model)
    if meta is not None and meta.precision != "unknown":
        return meta.precision
    row = split_stem(model.stem)[1]
    return row.name if row is not None else "unknown"


def family_reference(model: str | os.PathLike) -> Path | None:
    """The fp32 model of ``model``'s family beside it, or None.

    ``x_int8.tflite`` -> ``x_fp32.tflite`` (or ``x.tflite`` when its metadata says fp32); an fp32 model is its
    own reference.
    """
    model = Path(model)
    row = BY_NAME.get(model_precision(model))
    if row is not None and row.reference is None:
        return model
    reference = BY_NAME[row.reference if row is not None else REFERENCE]
    base = split_stem(model.stem)[0]
    candidate = model.with_name(reference.file_name(base))
    if candidate.is_file():
        return candidate
    plain = model.with_name(f"{base}.tflite")
    if plain != model and plain.is_file() and model_precision(plain) == reference.name:
        return plain
    return None
