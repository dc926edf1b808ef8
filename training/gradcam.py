"""Grad-CAM for .keras models: where the last convolutional features that raise p_fake are.

Grad-CAM (Selvaraju et al., 2017) weights each channel of a convolutional layer's output by the mean gradient of
the score over that channel, sums, and keeps the positive part: the regions whose features push the model towards
FAKE. The score here is the logit of p_fake (not p_fake itself, whose gradient vanishes when the model is sure).
It needs gradients, so TensorFlow; the interpreter-only runtime explains .tflite models by occlusion instead
(``edgedetect.explain``), and ``edgedetect explain`` picks this module for a ``.keras`` file.

An ensemble (members averaged in one graph, ``training/ensemble.py``) has no convolution of its own: its map is the
mean of its members' maps, as its p_fake is the mean of theirs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Union

import keras  # noqa: F401  (imported first so a runtime-only install fails here, with the CLI's one-line message)
import numpy as np
from PIL import Image

from edgedetect import LABELS
from edgedetect.errors import EdgeDetectError
from edgedetect.explain import Explanation
from edgedetect.preprocess import open_image, to_array

_SKIP = ("InputLayer", "Rescaling", "Resizing", "Normalization", "MaxPooling2D", "AveragePooling2D", "Dropout")
_EPS = 1e-6


def feature_layer(model):
    """The last top-level layer with a spatial (rank-4) output that is not input handling or pooling, or None.

    For the CNNs of ``training/model_spec.py`` that is the last ReLU; for a Keras application nested as one layer
    (MobileNetV3, ResNet50) it is the application, whose output is its last feature map.
    """
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is None or len(shape) != 4 or type(layer).__name__ in _SKIP:
            continue
        if layer.name == "caffe_preprocess":  # ResNet50's frozen input conversion, not a feature
            continue
        return layer
    return None


def _members(model) -> list:
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def _cam(model, layer, x) -> np.ndarray:
    """Grad-CAM of ``model`` at ``layer`` for float images ``x`` (1, S, S, 3): (h, w) float, >= 0."""
    import keras
    import tensorflow as tf

    probe = keras.Model(model.inputs, [layer.output, model.output])
    with tf.GradientTape() as tape:
        features, p = probe(x, training=False)
        p = tf.clip_by_value(tf.reshape(p, [-1]), _EPS, 1 - _EPS)
        logit = tf.math.log(p) - tf.math.log(1 - p)
    grads = tape.gradient(logit, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0]
    return np.asarray(cam, dtype=np.float64)


def _upsample(cam: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(cam.astype(np.float32), "F").resize((size, size), Image.Resampling.BILINEAR),
                      dtype=np.float64)


def gradcam(model, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Grad-CAM map of ``model`` at the uint8 image ``x`` (S, S, 3), at input resolution, scaled to peak 1.

    Returns:
        ``(map (S, S) float in [0, 1], names of the layers used)``.

    Raises:
        EdgeDetectError: the model has no convolutional layer (nor members that have one).
    """
    import tensorflow as tf

    size = x.shape[0]
    batch = tf.convert_to_tensor(x[None].astype("float32"))
    layer = feature_layer(model)
    if layer is not None:
        cam, used = _upsample(_cam(model, layer, batch), size), [layer.name]
    else:
        members = _members(model)
        if not members:
            raise EdgeDetectError(f"{model.name}: no convolutional layer to explain with Grad-CAM")
        maps, used = [], []
        for member in members:
            m_size = int(member.input_shape[1])
            inner = feature_layer(member)
            if inner is None:
                raise EdgeDetectError(f"{model.name}: member {member.name} has no convolutional layer for Grad-CAM")
            xm = batch if m_size == size else tf.image.resize(batch, (m_size, m_size), method="bilinear")
            maps.append(_upsample(_cam(member, inner, xm), size))
            used.append(f"{member.name}/{inner.name}")
        cam = np.mean(maps, axis=0)
    peak = cam.max()
    return (cam / peak if peak > 0 else cam), used


class GradCamExplainer:
    """Explains a .keras model's decisions with Grad-CAM; the same interface as ``edgedetect.explain.Explainer``.

    The model and its threshold are loaded as ``edgedetect evaluate`` loads them (the training run's
    ``metrics.json`` beside the model, else 0.5).
    """

    def __init__(self, model_path: Union[str, os.PathLike], threshold: float | None = None):
        from training.keras_model import open_scorer

        scorer = open_scorer(Path(model_path))
        if scorer.kind != "keras":
            raise EdgeDetectError(f"{model_path}: Grad-CAM explains .keras models; explain a .tflite with occlusion")
        self.path = Path(model_path)
        self.net = scorer.net
        self.input_size = scorer.input_size
        if threshold is not None:
            self.threshold = float(threshold)
        else:
            self.threshold = scorer.model_threshold[0] if scorer.model_threshold else 0.5

    def description(self) -> str:
        return f"{self.path.name} (keras, {self.input_size}x{self.input_size})"

    def method_line(self) -> str:
        return "Grad-CAM on the last convolutional features (2 model calls per image: the prediction, then one forward and backward pass)"

    def explain(self, source: Union[str, os.PathLike, bytes], name: str | None = None) -> tuple[Explanation, Image.Image]:
        """Decode ``source`` and explain the model's decision on it (see ``Explainer.explain``)."""
        from training.keras_model import predict_keras

        start = time.perf_counter()
        img = open_image(source)
        x = to_array(img, self.input_size)
        p_fake = float(predict_keras(self.net, x[None])[0])
        heat, layers = gradcam(self.net, x)
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        e = Explanation(
            path=name if name is not None else str(source), label=LABELS[int(p_fake >= self.threshold)],
            p_fake=p_fake, threshold=self.threshold, method="grad-cam", heatmap=heat,
            region=(left, top, left + side, top + side), image_size=img.size,
            meaning="Grad-CAM of the logit of p_fake at the named layers, upsampled to model-input pixels and "
                    "scaled to its peak (evidence for FAKE only)",
            params={"layers": layers, "input_size": self.input_size}, n_images=1, n_invokes=2)
        e.seconds = time.perf_counter() - start
        return e, img

