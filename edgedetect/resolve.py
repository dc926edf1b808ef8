"""A model's settings, each resolved once, in one stated order: what the user gave > the model's own > a default.

* **threshold** (p_fake at or above which an image is FAKE): ``--threshold`` > one chosen on the data's val split
  (``evaluate --optimize-threshold``; never on the split being scored) > the model's own (its metadata sidecar
  ``<stem>.json``, or the ``metrics.json`` of the training run a ``.keras`` sits in) > 0.5.
* **input size**: the model's input tensor; metadata that names another size belongs to another model (an error).
* **preprocessing mode**: the metadata's ``preprocessing.mode`` (``resize`` or ``crops``) > ``resize``.

Every command (predict, evaluate, bench, explain, serve) and :class:`edgedetect.runtime.Classifier` ask here.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from edgedetect.errors import EdgeDetectError
from edgedetect.metadata import ModelMetadata

DEFAULT_THRESHOLD = 0.5
DEFAULT_MODE = "resize"


class Threshold(NamedTuple):
    """A resolved threshold and where it came from (shown in reports, e.g. ``model metadata (x_int8.json)``)."""

    value: float
    source: str


def resolve_threshold(option: float | None = None, chosen: tuple[float, str] | None = None,
                      model: tuple[float, str] | None = None) -> Threshold:
    """The threshold to use, in the module's order.

    Args:
        option: the user's ``--threshold`` (None: not given).
        chosen: ``(threshold, how)`` chosen on the val split, where asked for.
        model: ``(threshold, where from)`` the model states (:func:`model_threshold`), or None.
    """
    if option is not None:
        return Threshold(float(option), "--threshold")
    for found in (chosen, model):
        if found is not None:
            return Threshold(float(found[0]), found[1])
    return Threshold(DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD:g} (the model states none)")


def model_threshold(meta: ModelMetadata | None, sidecar: str | Path | None) -> tuple[float, str] | None:
    """``(threshold, "model metadata (<sidecar>)")`` when the model has a metadata file, else None."""
    if meta is None or sidecar is None:
        return None
    return float(meta.threshold), f"model metadata ({Path(sidecar).name})"


def resolve_mode(meta: ModelMetadata) -> str:
    """``resize`` (the whole image resized to the input size) or ``crops`` (native-resolution crops)."""
    return (meta.preprocessing or {}).get("mode", DEFAULT_MODE)


def resolve_input_size(path: Path, meta: ModelMetadata | None, tensor_size: int) -> int:
    """The input tensor's side; raises EdgeDetectError when the metadata names another (it describes another model)."""
    if meta is not None and meta.input_size != tensor_size:
        raise EdgeDetectError(f"{path}: metadata says input size {meta.input_size} but the model takes "
                              f"{tensor_size}; the .json beside it belongs to another model")
    return tensor_size
