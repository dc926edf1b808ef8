"""Self-describing models: the metadata that travels beside every .tflite as ``<stem>.json``.

``model_int8.tflite`` is described by ``model_int8.json``: labels (index 1, FAKE = AI-generated, is the
positive class), input size, preprocessing, decision threshold, precision and I/O types, and provenance
(architecture, training data and command, metrics, source model hash, calibration set).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgedetect import LABELS, __version__
from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_text
from edgedetect.preprocess import PREPROCESSING

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")


@dataclass
class ModelMetadata:
    """What a model file needs beside it to be used correctly.

    Attributes:
        input_size: side of the square RGB input, in pixels.
        precision: fp32, fp16, dynamic or int8.
        threshold: p_fake at or above which an image is called FAKE.
        labels: class names by output index; the model outputs one sigmoid, p(labels[1]).
        io: dtype of the input/output tensors: float, int8 or uint8.
        preprocessing: how input pixels are made (the runtime's preprocessing) and normalised (in the graph).
        arch: registry name of the architecture.
        training: dataset, command and settings of the training run.
        metrics: evaluation figures, each naming its dataset and split.
        source_model: path and sha256 of the model it was converted from.
        calibration: description of the int8 calibration set (None for other precisions).
    """

    input_size: int
    precision: str
    threshold: float = 0.5
    labels: list = field(default_factory=lambda: list(LABELS))
    io: str = "float"
    preprocessing: dict = field(default_factory=lambda: dict(PREPROCESSING))
    arch: str = "unknown"
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    source_model: dict = field(default_factory=dict)
    calibration: dict | None = None
    edgedetect_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, doc: dict) -> "ModelMetadata":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``model.tflite`` -> ``model.json``."""
    return Path(model_path).with_suffix(".json")


def read_metadata(model_path: str | os.PathLike) -> ModelMetadata | None:
    """The metadata beside ``model_path``, or None when there is no sidecar file.

    Raises:
        EdgeDetectError: the sidecar exists but is not valid metadata JSON.
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        meta = ModelMetadata.from_dict(doc)
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise EdgeDetectError(f"{path}: not valid model metadata ({e}); delete or fix it") from None
    if list(meta.labels) != list(LABELS):
        raise EdgeDetectError(f"{path}: labels {meta.labels} are not {list(LABELS)}; this is not an edgedetect model")
    return meta


def write_metadata(model_path: str | os.PathLike, meta: ModelMetadata) -> Path:
    """Write ``meta`` beside ``model_path`` atomically; returns the sidecar path."""
    path = sidecar_path(model_path)
    atomic_write_text(path, meta.to_json())
    return path
