"""A Keras model, loaded and scored in one place: the input-shape check, batched p_fake, and the scorer that
``edgedetect evaluate``, a distillation teacher and Grad-CAM use for ``.keras`` files.

Keras is imported inside the functions, so importing this module costs nothing where Keras is missing; loading a
model there is one clear error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from edgedetect.errors import EdgeDetectError
from edgedetect.evaluate import TFLiteScorer, check_model_file
from training.run import Run

NEEDS_KERAS = "needs Keras and TensorFlow (pip install 'edgedetect[train]')"


def load_keras(path: str | os.PathLike):
    """Load a ``.keras`` image classifier safely (``safe_mode=True``: no arbitrary code from the file).

    Raises:
        EdgeDetectError: Keras missing, a file Keras cannot load, or not one square RGB input and one output.
    """
    path = Path(path)
    try:
        import keras
    except ImportError:
        raise EdgeDetectError(f"{path}: loading a .keras model {NEEDS_KERAS}, or use its .tflite instead") from None
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # Keras raises ValueError/TypeError/OSError/zipfile errors for files it cannot read
        reason = " ".join(str(e).split()) or type(e).__name__  # one line: the CLI prints it as its error line
        raise EdgeDetectError(f"{path}: cannot load this Keras model ({type(e).__name__}: {reason}); "
                              "is it a .keras file saved by Keras 3?") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgeDetectError(f"{path}: model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                              "an edgedetect model takes one image batch and returns one p_fake")
    shape = list(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise EdgeDetectError(f"{path}: not an image classifier: input shape {shape}, expected [batch, size, size, 3] "
                              "(square RGB with a fixed size)")
    return model


def input_size(model) -> int:
    """The side of the square input of a model :func:`load_keras` accepted."""
    return int(model.inputs[0].shape[1])


def predict_keras(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """p_fake for uint8 images with a Keras model, in batches."""
    out = model.predict(x.astype("float32"), batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float64).reshape(-1)


class KerasScorer:
    """A ``.keras`` model as :func:`edgedetect.evaluate.evaluate` scores it: ``predict(uint8 NHWC) -> p_fake``, its
    input size, and the threshold and settings of the training run it sits in (if any)."""

    kind = "keras"

    def __init__(self, model: str | os.PathLike):
        model = Path(model)
        check_model_file(model)
        if model.suffix.lower() != ".keras":
            raise EdgeDetectError(f"{model}: not a .keras model; a .tflite is scored by edgedetect.evaluate.TFLiteScorer")
        self.net = load_keras(model)
        self.input_size = input_size(self.net)
        run = Run.around(model)
        self.training: dict = run.settings if run is not None else {}
        self.model_threshold: Optional[tuple[float, str]] = None
        if run is not None and run.threshold is not None:
            self.model_threshold = (run.threshold, run.threshold_source)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict_keras(self.net, x)


def open_scorer(model: str | os.PathLike, threads: Optional[int] = None):
    """A scorer for a ``.keras`` (Keras) or ``.tflite`` (the interpreter) model."""
    model = Path(model)
    return KerasScorer(model) if model.suffix.lower() == ".keras" else TFLiteScorer(model, threads)
