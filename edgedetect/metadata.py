"""Self-describing models: the metadata that travels beside every .tflite as ``<stem>.json``.

``model_int8.tflite`` is described by ``model_int8.json``: labels (index 1, FAKE = AI-generated, is the
positive class), input size, preprocessing, decision threshold, precision and I/O types, and provenance
(architecture, training data and command, metrics, source model hash, calibration set).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgedetect import LABELS, __version__
from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_text
from edgedetect.preprocess import PREPROCESSING

MAX_METADATA_BYTES = 1 << 20


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
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise ValueError(f"{path.stat().st_size:,} bytes, more than metadata ever takes")
        doc = json.loads(path.read_text(encoding="utf-8"))
        problem = check_metadata(doc)
        if problem is None:
            meta = ModelMetadata.from_dict(doc)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, OSError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        detail = "nested too deeply" if isinstance(e, RecursionError) else detail
        raise EdgeDetectError(f"{path}: not valid model metadata ({detail}); delete or fix it") from None
    if problem is not None:
        raise EdgeDetectError(f"{path}: not valid model metadata: {problem}; delete or fix it")
    return meta


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_metadata(doc) -> str | None:
    """The first problem of a metadata document's types and ranges, or None when it is usable.

    Checks the fields the runtime reads: ``input_size`` a positive integer, ``threshold`` a finite number in
    [0, 1], ``labels`` exactly REAL, FAKE, ``precision``/``io``/``arch`` strings, ``preprocessing``/``training``/
    ``metrics``/``source_model`` objects, ``calibration`` an object or null. Unknown keys, and anything nested
    inside those objects, are accepted: newer files may carry more.
    """
    if not isinstance(doc, dict):
        return f"expected a JSON object, received {_short(doc)} ({_kind(doc)})"
    for key in ("input_size", "precision"):
        if key not in doc:
            return f"missing {key!r}"
    size = doc["input_size"]
    if not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 1 << 16):
        return f"input_size must be a positive integer, received {_short(size)} ({_kind(size)})"
    if "threshold" in doc:
        t = doc["threshold"]
        if not (_is_number(t) and math.isfinite(t) and 0.0 <= t <= 1.0):
            return f"threshold must be a number from 0 to 1, received {_short(t)} ({_kind(t)})"
    if "labels" in doc and doc["labels"] != list(LABELS):
        return f"labels {_short(doc['labels'])} are not {list(LABELS)}; this is not an edgedetect model"
    for key, kinds, what in (("precision", str, "a string"), ("io", str, "a string"), ("arch", str, "a string"),
                             ("edgedetect_version", str, "a string"), ("preprocessing", dict, "an object"),
                             ("training", dict, "an object"), ("metrics", dict, "an object"),
                             ("source_model", dict, "an object"),
                             ("calibration", (dict, type(None)), "an object or null")):
        if key in doc and not isinstance(doc[key], kinds):
            return f"{key} must be {what}, received {_short(doc[key])} ({_kind(doc[key])})"
    return None


_JSON_TYPES = {"NoneType": "null", "bool": "boolean", "int": "number", "float": "number", "str": "string",
               "list": "array", "dict": "object"}


def _kind(value) -> str:
    return _JSON_TYPES.get(type(value).__name__, type(value).__name__)


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (str, bool, type(None))) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def write_metadata(model_path: str | os.PathLike, meta: ModelMetadata) -> Path:
    """Write ``meta`` beside ``model_path`` atomically; returns the sidecar path."""
    path = sidecar_path(model_path)
    atomic_write_text(path, meta.to_json())
    return path
