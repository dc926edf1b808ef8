"""The models a bench measures: the shipped ones, and each one's fp32 reference of the same family."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PRECISION_SUFFIXES = ("_fp32", "_fp16", "_dynamic", "_int8")


def shipped_models() -> list[Path]:
    """The .tflite files installed in the ``edgedetect.models`` package (the repository's ``models/``)."""
    root = Path(str(resources.files("edgedetect.models")))
    return sorted(root.glob("*.tflite"))


def _precision(model: Path) -> str:
    from edgedetect.metadata import read_metadata

    meta = read_metadata(model)
    if meta is not None and meta.precision != "unknown":
        return meta.precision
    return next((s[1:] for s in PRECISION_SUFFIXES if model.stem.endswith(s)), "unknown")


def family_reference(model: str | os.PathLike) -> Path | None:
    """The fp32 model of ``model``'s family beside it, or None.

    ``x_int8.tflite`` -> ``x_fp32.tflite`` (or ``x.tflite`` when its metadata says fp32); an fp32 model is its
    own reference.
    """
    model = Path(model)
    if _precision(model) == "fp32":
        return model
    stem = model.stem
    base = next((stem[: -len(s)] for s in PRECISION_SUFFIXES if stem.endswith(s)), stem)
    candidate = model.with_name(f"{base}_fp32.tflite")
    if candidate.is_file():
        return candidate
    plain = model.with_name(f"{base}.tflite")
    if plain != model and plain.is_file() and _precision(plain) == "fp32":
        return plain
    return None
