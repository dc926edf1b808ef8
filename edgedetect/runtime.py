"""Run a .tflite detector on images with the interpreter alone (no TensorFlow).

``Classifier`` loads the model once, checks that it is an image classifier (NHWC RGB input, one output per
image), reads its metadata sidecar and runs batches. Integer input/output tensors are quantized and
dequantized with the tensor's own scale and zero point.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from edgedetect.errors import EdgeDetectError
from edgedetect.interpreter import find_interpreter, load_interpreter
from edgedetect.macs import count_macs
from edgedetect.metadata import ModelMetadata, read_metadata

DEFAULT_BATCH = 256


def _quant_params(detail: dict) -> tuple[float, int]:
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale:
        qp = detail.get("quantization_parameters", {})
        scales, zeros = qp.get("scales", []), qp.get("zero_points", [])
        if len(scales):
            scale, zero = float(scales[0]), int(zeros[0])
    return float(scale), int(zero)


class Classifier:
    """A loaded .tflite detector.

    Args:
        model_path: the .tflite file; its metadata is read from the ``.json`` beside it.
        threads: interpreter threads (default: all cores).
        batch_size: images per invoke in :meth:`predict`.

    Raises:
        EdgeDetectError: missing or corrupt file, or a model that is not an RGB image classifier.
    """

    def __init__(self, model_path: str | os.PathLike, threads: int | None = None, batch_size: int = DEFAULT_BATCH):
        path = Path(model_path)
        if not path.is_file():
            raise EdgeDetectError(f"{path}: model not found" + (" (it is a folder)" if path.is_dir() else ""))
        if path.suffix.lower() != ".tflite":
            raise EdgeDetectError(f"{path}: not a .tflite model (runtime commands take .tflite files; "
                                  "convert a .keras model with `edgedetect convert`)")
        _, self.interpreter_package, self.interpreter_version = find_interpreter()
        self.path = path
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = batch_size
        try:
            self._interp = load_interpreter(str(path), self.threads)
            # Inside the try: a damaged file can pass the flatbuffer check and hold names that are not UTF-8.
            inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        except (ValueError, RuntimeError) as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgeDetectError(f"{path}: not a valid TFLite model ({detail})") from None
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgeDetectError(f"{path}: not an edgedetect classifier: it has {len(inputs)} inputs and "
                                  f"{len(outputs)} outputs (expected 1 image input and 1 score output)")
        self._in, self._out = inputs[0], outputs[0]
        shape = tuple(int(d) for d in self._in["shape"])
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
            raise EdgeDetectError(f"{path}: not an image classifier: input shape {list(shape)}, "
                                  "expected [batch, size, size, 3] (square RGB)")
        if int(np.prod(self._out["shape"][1:])) != 1:
            shape_out = [int(d) for d in self._out["shape"]]
            raise EdgeDetectError(f"{path}: not a binary detector: output shape {shape_out}, "
                                  "expected one score (p_fake) per image")
        self.input_size = shape[1]
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self._in_q = _quant_params(self._in)
        self._out_q = _quant_params(self._out)
        meta = read_metadata(path)
        if meta is None:
            print(f"warning: {path}: no metadata file beside it ({path.with_suffix('.json').name}); assuming labels "
                  "REAL/FAKE, threshold 0.5 and raw RGB 0-255 input", file=sys.stderr)
            meta = ModelMetadata(input_size=self.input_size, precision="unknown", io=self.input_dtype.name)
        elif meta.input_size != self.input_size:
            raise EdgeDetectError(f"{path}: metadata says input size {meta.input_size} but the model takes "
                                  f"{self.input_size}; the .json beside it belongs to another model")
        self.metadata = meta
        self._batch = shape[0]

    @property
    def threshold(self) -> float:
        return float(self.metadata.threshold)

    def _resize(self, n: int) -> None:
        if n != self._batch:
            s = self.input_size
            self._interp.resize_tensor_input(self._in["index"], [n, s, s, 3])
            self._interp.allocate_tensors()
            self._batch = n

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        if self.input_dtype.kind == "f":
            return x.astype(self.input_dtype)
        scale, zero = self._in_q
        if not scale:
            raise EdgeDetectError(f"{self.path}: integer input tensor without quantization parameters")
        if scale == 1.0 and x.dtype == np.uint8:
            # Raw pixels at scale 1 are their own quantized values; skipping the float round trip is exact and
            # saves ~30% of a small int8 model's batch time.
            if zero == 0 and self.input_dtype == np.uint8:
                return x
            if zero == -128 and self.input_dtype == np.int8:
                return (x ^ 0x80).view(np.int8)
        info = np.iinfo(self.input_dtype)
        q = np.rint(x.astype(np.float32) / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        if self.output_dtype.kind == "f":
            return y.astype(np.float64)
        scale, zero = self._out_q
        return (y.astype(np.float64) - zero) * scale

    def invoke(self, batch: np.ndarray) -> np.ndarray:
        """p_fake for one batch of uint8 images (N, S, S, 3), as a float64 array of N (one invoke)."""
        self._resize(len(batch))
        self._interp.set_tensor(self._in["index"], self._quantize(batch))
        self._interp.invoke()
        return self._dequantize(self._interp.get_tensor(self._out["index"])).reshape(len(batch))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """p_fake for uint8 images of shape (N, S, S, 3), in batches of ``batch_size``.

        The last, smaller batch is padded to the batch size so the interpreter is never re-allocated.
        """
        images = np.asarray(images)
        s = self.input_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise EdgeDetectError(f"{self.path}: expected images of shape (N, {s}, {s}, 3), received {images.shape}")
        n = len(images)
        if n == 0:
            return np.zeros(0)
        size = min(self.batch_size, n)
        out = np.empty(n)
        for start in range(0, n, size):
            chunk = images[start : start + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), s, s, 3), chunk.dtype)])
            out[start : start + size] = self.invoke(chunk)[: n - start]
        return out

    def describe(self) -> dict:
        """Tensors, quantization parameters, size and metadata (what `edgedetect info` prints)."""

        def tensor(d, q):
            return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                    "quantization": {"scale": q[0], "zero_point": q[1]} if q[0] else None}

        return {
            "model": str(self.path),
            "size_bytes": self.path.stat().st_size,
            "interpreter": f"{self.interpreter_package} {self.interpreter_version}",
            "input": tensor(self._in, self._in_q),
            "output": tensor(self._out, self._out_q),
            "macs_per_image": count_macs(self._interp),
            "metadata": self.metadata.__dict__,
        }
