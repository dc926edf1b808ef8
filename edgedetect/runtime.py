"""Run a .tflite detector on images with the interpreter alone (no TensorFlow).

``Classifier`` loads the model once, checks that it is an image classifier (NHWC RGB input, one output per
image), reads its metadata sidecar and runs batches. Integer input/output tensors are quantized and
dequantized with the tensor's own scale and zero point.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from edgedetect.errors import EdgeDetectError, EdgeDetectWarning
from edgedetect.interpreter import find_interpreter, load_interpreter
from edgedetect.macs import count_macs
from edgedetect.metadata import ModelMetadata, read_metadata, sidecar_path
from edgedetect.model_check import check_io_types, check_model, check_threads, probe_model, read_model_file
from edgedetect.resolve import Threshold, model_threshold, resolve_input_size, resolve_mode, resolve_threshold

DEFAULT_BATCH = 256


def _quant_params(detail: dict) -> tuple[float, int]:
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale:
        qp = detail.get("quantization_parameters", {})
        scales, zeros = qp.get("scales", []), qp.get("zero_points", [])
        if len(scales):
            scale, zero = float(scales[0]), int(zeros[0])
    return float(scale), int(zero)


# An image whose shorter side is more than this many times the largest side a model was trained on is out of
# its domain: a 32-px model given a 4000-px photo sees it shrunk 100-fold, and the traces it learned are gone.
OUT_OF_DOMAIN_FACTOR = 4


def domain_warning(meta: ModelMetadata, size, padded: bool = False) -> str | None:
    """A one-line warning when an image of ``size`` (width, height) is far outside what the model was trained on."""
    w, h = size
    if padded:
        return (f"{w}x{h} px is smaller than the model's {meta.input_size}-px crop: mirror-padded, an input the model "
                "never saw in training; the answer is unreliable")
    trained = (meta.training or {}).get("image_sizes") or {}
    longest = (trained.get("long_side") or [None, None, None])[2]
    if resolve_mode(meta) == "resize":
        longest = longest or meta.input_size
        if min(w, h) > OUT_OF_DOMAIN_FACTOR * longest:
            return (f"{w}x{h} px resized to {meta.input_size} px for a model trained on images of at most "
                    f"{longest} px: out of its domain, the answer is unreliable")
    return None


def _first_invoke(Interpreter, data: bytes) -> None:
    """Load ``data``, run it once at its batch size and once at batch 2, free it (what :func:`probe_model` runs)."""
    interp = Interpreter(model_content=data, num_threads=1)
    interp.allocate_tensors()
    details = interp.get_input_details()
    for batch in (None, 2):
        try:
            if batch is not None:
                if len(details) != 1 or len(details[0]["shape"]) != 4:
                    return
                interp.resize_tensor_input(details[0]["index"], [batch, *details[0]["shape"][1:]])
                interp.allocate_tensors()
                details = interp.get_input_details()
            for d in details:
                interp.set_tensor(d["index"], np.full(d["shape"], 100, d["dtype"]))
            interp.invoke()
            for d in interp.get_output_details():
                interp.get_tensor(d["index"])
        except (RuntimeError, ValueError) as e:
            if batch is None:
                raise
            lines = str(e).strip().splitlines()
            raise RuntimeError(f"it runs one image at a time only ({lines[0] if lines else type(e).__name__}); "
                               "edgedetect runs batches: convert it with a free batch dimension") from None
    del interp  # a damaged model can also crash when the interpreter frees it


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
        if path.suffix.lower() != ".tflite" and path.is_file():
            raise EdgeDetectError(f"{path}: not a .tflite model (runtime commands take .tflite files; "
                                  "convert a .keras model with `edgedetect convert`)")
        data = read_model_file(path)
        Interpreter, self.interpreter_package, self.interpreter_version = find_interpreter()
        self.path = path
        self.threads = check_threads(threads, "--threads") or os.cpu_count() or 1
        self.batch_size = batch_size
        try:
            check_model(data)
            probe_model(data, lambda d: _first_invoke(Interpreter, d))
            self._model_data = data  # the interpreter reads the bytes in place; they must outlive it
            self._interp = load_interpreter(data, self.threads)
            # Inside the try: a damaged file can pass the flatbuffer check and hold names that are not UTF-8.
            inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        except (ValueError, RuntimeError, EdgeDetectError) as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgeDetectError(f"{path}: not a valid TFLite model ({detail})") from None
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgeDetectError(f"{path}: not an edgedetect classifier: it has {len(inputs)} inputs and "
                                  f"{len(outputs)} outputs (expected 1 image input and 1 score output)")
        self._in, self._out = inputs[0], outputs[0]
        shape = tuple(int(d) for d in self._in["shape"])
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or shape[1] < 1:
            raise EdgeDetectError(f"{path}: not an image classifier: input shape {list(shape)}, "
                                  "expected [batch, size, size, 3] (square RGB)")
        signature = [int(d) for d in self._in.get("shape_signature", shape)]
        if len(signature) == 4 and min(signature[1:]) < 0:
            raise EdgeDetectError(f"{path}: the input size is dynamic (shape signature {signature}); edgedetect "
                                  "needs a model converted with a fixed input size, such as [1, 32, 32, 3]")
        check_io_types(path, self._in, self._out)
        if int(np.prod(self._out["shape"][1:])) != 1:
            shape_out = [int(d) for d in self._out["shape"]]
            raise EdgeDetectError(f"{path}: not a binary detector: output shape {shape_out}, "
                                  "expected one score (p_fake) per image")
        meta = read_metadata(path)
        self.input_size = resolve_input_size(path, meta, shape[1])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self._in_q = _quant_params(self._in)
        self._out_q = _quant_params(self._out)
        self.metadata_file = None if meta is None else sidecar_path(path)
        if meta is None:
            warnings.warn(f"{path}: no metadata file beside it ({path.with_suffix('.json').name}); assuming labels "
                          "REAL/FAKE, threshold 0.5 and raw RGB 0-255 input", EdgeDetectWarning, stacklevel=2)
            meta = ModelMetadata(input_size=self.input_size, precision="unknown", io=self.input_dtype.name)
        self.metadata = meta
        self._batch = shape[0]

    def resolve_threshold(self, option: float | None = None) -> Threshold:
        """The threshold to use with this model: ``option`` > its metadata's > 0.5 (:mod:`edgedetect.resolve`)."""
        return resolve_threshold(option, model=model_threshold(self.metadata, self.metadata_file))

    @property
    def threshold(self) -> float:
        """The model's own threshold (its metadata's, else 0.5)."""
        return self.resolve_threshold().value

    @property
    def mode(self) -> str:
        """``resize`` (the whole image, resized to the input size) or ``crops`` (native-resolution crops)."""
        return resolve_mode(self.metadata)

    def inputs_for(self, img) -> tuple[np.ndarray, dict]:
        """The model's inputs for one decoded RGB image: uint8 ``(N, S, S, 3)`` and what was done to make them.

        ``resize`` models get one array (:func:`edgedetect.preprocess.to_array`); ``crops`` models get the crops of
        :func:`edgedetect.crops.native_crops`, whose p_fake :meth:`combine` turns into one. The dict holds the
        image size, the crop boxes (crops models) and an out-of-domain warning or None (:func:`domain_warning`).
        """
        from edgedetect.crops import native_crops
        from edgedetect.preprocess import to_array

        size = img.size if hasattr(img, "size") and not isinstance(img, np.ndarray) else img.shape[1::-1]
        info = {"size": [int(size[0]), int(size[1])], "boxes": None, "padded": False}
        if self.mode == "crops":
            pre = self.metadata.preprocessing
            arrays, boxes, padded = native_crops(img, self.input_size, int(pre.get("max_crops", 16)))
            info.update(boxes=boxes, padded=padded)
        else:
            arrays = to_array(img, self.input_size)[None]
        info["warning"] = domain_warning(self.metadata, info["size"], info["padded"])
        return arrays, info

    def combine(self, p_crops: np.ndarray) -> float:
        """One p_fake per image from the p_fake of its inputs (the metadata's combine rule; one input: itself)."""
        from edgedetect.crops import combine

        if len(p_crops) == 1:
            return float(p_crops[0])
        return combine(p_crops, self.metadata.preprocessing.get("combine", "mean"))

    def p_fake(self, img) -> float:
        """One decoded image's p_fake: its inputs (:meth:`inputs_for`), one invoke, the combine rule (:meth:`combine`).

        ``edgedetect predict`` batches the inputs of several images instead; the number is the same.
        """
        arrays, _ = self.inputs_for(img)
        return self.combine(self.predict(arrays))

    def pick(self, width: int, height: int) -> "Classifier":
        """The model for an image of this size: itself (see :class:`edgedetect.predict.AutoModel` for routing)."""
        return self

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
        p = self._dequantize(self._interp.get_tensor(self._out["index"])).reshape(len(batch))
        ok = (p >= -1e-6) & (p <= 1 + 1e-6)  # false for NaN too; the slack is float rounding, not a wrong model
        if not ok.all():
            raise EdgeDetectError(f"{self.path}: the model's output {p[~ok][0]:g} is not a probability in [0, 1]; "
                                  "an edgedetect detector ends in a sigmoid (p_fake)")
        return np.clip(p, 0.0, 1.0)

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
