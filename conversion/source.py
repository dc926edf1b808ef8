"""The model to convert: which file, loaded once (a .keras through :mod:`training.keras_model`, or a SavedModel),
with its input size, a predict function for the agreement check, and the converter that reads it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgedetect.errors import EdgeDetectError

Log = Callable[[str], None]


def resolve_model(model_path: Optional[str | os.PathLike], log: Log) -> Path:
    """The model to convert: the given path, or the latest training run's best.keras."""
    if model_path is None:
        from training.run import Run

        path = Run.latest().best_model
        log(f"model: {path} (latest training run)")
        return path
    path = Path(model_path)
    if not path.exists():
        raise EdgeDetectError(f"{path}: model not found (expected a .keras file or a SavedModel folder)")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise EdgeDetectError(f"{path}: a folder but not a SavedModel (no saved_model.pb in it); "
                                  "give a .keras file or a SavedModel folder")
    elif path.suffix.lower() != ".keras":
        hint = " (it is already converted)" if path.suffix.lower() == ".tflite" else ""
        raise EdgeDetectError(f"{path}: not a .keras model or SavedModel folder{hint}; "
                              "convert a .keras file saved by `edgedetect train` or a SavedModel folder")
    log(f"model: {path}")
    return path


@dataclass
class Source:
    """A loaded source model."""

    path: Path
    kind: str  # keras | saved_model
    input_size: int
    name: str
    layer_names: list
    predict: Callable[[np.ndarray], np.ndarray]
    make_converter: Callable


def load_source(path: Path) -> Source:
    """Load a .keras file or SavedModel folder for conversion.

    Raises:
        EdgeDetectError: a model that cannot be loaded, or not one square RGB image input and one output.
    """
    import tensorflow as tf

    if path.is_dir():
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as e:  # TF raises many types for a broken SavedModel
            raise EdgeDetectError(f"{path}: cannot load the SavedModel ({type(e).__name__}: {first_line(e)})") from None
        signature = loaded.signatures.get("serving_default") or next(iter(loaded.signatures.values()), None)
        if signature is None:
            raise EdgeDetectError(f"{path}: the SavedModel has no serving signature; export it with one")
        inputs = signature.structured_input_signature[1]
        if len(inputs) != 1 or len(signature.structured_outputs) != 1:
            raise EdgeDetectError(f"{path}: signature has {len(inputs)} inputs and {len(signature.structured_outputs)} "
                                  "outputs; an edgedetect model takes one image batch and returns one p_fake")
        (in_name, spec), = inputs.items()
        (out_name,) = signature.structured_outputs
        shape = list(spec.shape)

        def predict(x: np.ndarray) -> np.ndarray:
            outs = [signature(**{in_name: tf.constant(x[i : i + 256].astype("float32"))})[out_name].numpy()
                    for i in range(0, len(x), 256)]
            return np.concatenate(outs).astype(np.float64).reshape(-1)

        if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
            raise EdgeDetectError(f"{path}: input shape {shape} is not [batch, size, size, 3] (square RGB with a fixed size)")
        make = lambda: tf.lite.TFLiteConverter.from_saved_model(str(path))  # noqa: E731
        return Source(path, "saved_model", int(shape[1]), path.name, [], predict, make)

    from training.keras_model import input_size, load_keras, predict_keras

    model = load_keras(path)
    return Source(path, "keras", input_size(model), model.name, [layer.name for layer in _all_layers(model)],
                  lambda x: predict_keras(model, x), lambda: tf.lite.TFLiteConverter.from_keras_model(model))


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):  # nested backbones (keras.applications)
            out.extend(_all_layers(layer))
    return out


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()

