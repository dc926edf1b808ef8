"""Keras or SavedModel -> self-describing .tflite files at fp32, fp16, dynamic-range or full-integer int8.

Every output is named by its precision (``<stem>_int8.tflite``), written atomically, never overwritten without
``force``, holds builtin TFLite ops only (no Flex/Select-TF ops, so the interpreter-only runtime runs it) and gets
its metadata sidecar (``<stem>_int8.json``): labels, input size, preprocessing, threshold, precision, I/O type,
provenance and, for int8, the calibration set.

int8 is post-training full-integer quantization calibrated on real images decoded by the runtime's own
preprocessing (:func:`edgedetect.data.load_dataset` -> :func:`edgedetect.preprocess.load_image`), a seeded,
class-balanced sample. Without calibration data int8 is an error, never random noise.

After converting, each file is run with the interpreter-only :class:`edgedetect.runtime.Classifier` on the
calibration images and compared with the source model (max |Δp|, label flips at the model's threshold).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgedetect import LABELS
from edgedetect.errors import EdgeDetectError, ImageError
from edgedetect.files import atomic_write_bytes, check_writable
from edgedetect.metadata import PRECISIONS, ModelMetadata, sidecar_path, write_metadata
from edgedetect.preprocess import PREPROCESSING

IO_TYPES = ("float", "int8", "uint8")
# XNNPACK has no int8 HARD_SWISH: a full-integer MobileNetV3 falls apart into ~20 delegate parts and runs slower
# than its fp32 (measured in benchmarks/conversion.md); with HARD_SWISH in float it is one part and the fastest.
# Integer I/O (microcontrollers, NPUs) means integer-only hardware, so there the default stays full integer.
AUTO_KEEP_FLOAT = ("HARD_SWISH",)
DEFAULT_NUM_CALIB = 300
MIN_SENSIBLE_CALIB = 100  # fewer images give activation ranges that clip unseen inputs
CALIB_SEED = 0

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class ConversionConfig:
    """What to convert to and how (pure data; see the named constructors).

    Attributes:
        precisions: any of fp32, fp16, dynamic, int8.
        calib: calibration dataset (folder/.tar.gz/.zip with REAL/FAKE folders, or a plain folder of images);
            None: the training run's data when the model comes from a run.
        num_calib: calibration images, balanced over the classes, drawn with ``seed``.
        io: input/output tensor type of the int8 file: float, int8 or uint8.
        out: output folder, or with a single precision a ``.tflite`` file path; None: beside the model.
        debug: run the quantization debugger and write the per-layer error table (int8).
        keep_float: op names (``HARD_SWISH``) or layer names left in float in the int8 file; ``()`` for full
            integer; None (default) keeps HARD_SWISH float when the model has it and the I/O is float (see
            :data:`AUTO_KEEP_FLOAT`).
        force: overwrite existing outputs.
        check: compare every output with the source model on the calibration images.
    """

    precisions: tuple[str, ...] = ("fp32",)
    calib: Optional[str] = None
    num_calib: int = DEFAULT_NUM_CALIB
    io: str = "float"
    out: Optional[str] = None
    debug: bool = False
    keep_float: Optional[tuple[str, ...]] = None
    force: bool = False
    seed: int = CALIB_SEED
    check: bool = True

    @classmethod
    def for_float(cls, precision: str = "fp32", **kwargs) -> "ConversionConfig":
        """One float file: fp32, fp16 (float16 weights) or dynamic (int8 weights, float activations)."""
        return cls(precisions=(precision,), **kwargs)

    @classmethod
    def for_int8(cls, calib: Optional[str] = None, num_calib: int = DEFAULT_NUM_CALIB, io: str = "float",
                 **kwargs) -> "ConversionConfig":
        """Full-integer int8 calibrated on ``num_calib`` images of ``calib``."""
        return cls(precisions=("int8",), calib=calib, num_calib=num_calib, io=io, **kwargs)

    @classmethod
    def for_all(cls, calib: Optional[str] = None, num_calib: int = DEFAULT_NUM_CALIB, **kwargs) -> "ConversionConfig":
        """All four precisions in one go."""
        return cls(precisions=PRECISIONS, calib=calib, num_calib=num_calib, **kwargs)

    @classmethod
    def from_quant(cls, quant: str, **kwargs) -> "ConversionConfig":
        """``--quant`` value (a precision or ``all``) -> config."""
        if quant == "all":
            return cls(precisions=PRECISIONS, **kwargs)
        return cls(precisions=(quant,), **kwargs)

    def validate(self) -> None:
        """Raise EdgeDetectError for combinations that make no sense."""
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise EdgeDetectError(f"--quant {', '.join(bad) or '(none)'}: valid are {', '.join(PRECISIONS)} or all")
        if self.io not in IO_TYPES:
            raise EdgeDetectError(f"--io {self.io}: valid are {', '.join(IO_TYPES)}")
        int8 = "int8" in self.precisions
        if self.io != "float" and not int8:
            raise EdgeDetectError(f"--io {self.io} needs an int8 output (only full-integer models have integer "
                                  f"tensors); add --quant int8 or use --io float")
        for flag, used in (("--debug", self.debug), ("--keep-float", bool(self.keep_float))):
            if used and not int8:
                raise EdgeDetectError(f"{flag} applies to int8 quantization; add --quant int8 (or all)")
        if self.num_calib < 1:
            raise EdgeDetectError(f"--num-calib must be at least 1; received {self.num_calib}")
        if self.out and str(self.out).lower().endswith(".tflite") and len(self.precisions) > 1:
            raise EdgeDetectError(f"--out {self.out}: a single file cannot hold {len(self.precisions)} precisions; "
                                  "give a folder, or pick one --quant")


@dataclass
class OutputReport:
    """One written file and how it compares with the source model."""

    precision: str
    path: Path
    size_bytes: int
    io: str
    delegate_partitions: Optional[int] = None
    max_abs_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    flips: Optional[int] = None
    n_checked: int = 0
    accuracy: Optional[float] = None
    float_ops: dict = field(default_factory=dict)

    @property
    def agreement(self) -> Optional[float]:
        return None if self.flips is None or not self.n_checked else 1.0 - self.flips / self.n_checked


@dataclass
class ConversionReport:
    """What :func:`convert` did: the source, the calibration set and one :class:`OutputReport` per file."""

    source: Path
    arch: str
    input_size: int
    threshold: float
    outputs: list[OutputReport]
    fp32_size: int
    calibration: Optional[dict] = None
    reference_accuracy: Optional[float] = None
    debug_csv: Optional[Path] = None
    debug_rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [o.path for o in self.outputs]


# ---------------------------------------------------------------------------------------------- the source model


@dataclass
class RunInfo:
    """The training run a .keras came from (its folder holds config.json and, when finished, metrics.json)."""

    run_dir: Optional[Path] = None
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def settings(self) -> dict:
        return self.config.get("config", {})


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_info(model_path: Path) -> RunInfo:
    """The run around ``model_path`` (empty when it is not in a run folder)."""
    folder = model_path.parent
    if model_path.suffix == ".keras" and (folder / "config.json").is_file():
        return RunInfo(folder, _read_json(folder / "config.json"), _read_json(folder / "metrics.json"))
    return RunInfo()


def resolve_model(model_path: Optional[str | os.PathLike], log: Log) -> Path:
    """The model to convert: the given path, or the latest training run's best.keras."""
    if model_path is None:
        from training.train import latest_run

        path = latest_run() / "best.keras"
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
class _Source:
    path: Path
    kind: str  # keras | saved_model
    input_size: int
    name: str
    layer_names: list
    predict: Callable[[np.ndarray], np.ndarray]
    make_converter: Callable


def _load_source(path: Path) -> _Source:
    import tensorflow as tf

    if path.is_dir():
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as e:  # TF raises many types for a broken SavedModel
            raise EdgeDetectError(f"{path}: cannot load the SavedModel ({type(e).__name__}: {_first_line(e)})") from None
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

        layers, name = [], path.name
        make = lambda: tf.lite.TFLiteConverter.from_saved_model(str(path))  # noqa: E731
    else:
        import keras

        from training.train import predict_keras

        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception as e:  # Keras raises ValueError/TypeError/OSError/zipfile errors for bad files
            raise EdgeDetectError(f"{path}: cannot load the Keras model ({type(e).__name__}: {_first_line(e)}); "
                                  "is it a .keras file saved by Keras 3?") from None
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise EdgeDetectError(f"{path}: model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                                  "an edgedetect model takes one image batch and returns one p_fake")
        shape = list(model.inputs[0].shape)
        predict = lambda x: predict_keras(model, x)  # noqa: E731
        layers = [layer.name for layer in _all_layers(model)]
        name = model.name
        make = lambda: tf.lite.TFLiteConverter.from_keras_model(model)  # noqa: E731
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise EdgeDetectError(f"{path}: input shape {shape} is not [batch, size, size, 3] (square RGB with a fixed size)")
    return _Source(path, "saved_model" if path.is_dir() else "keras", int(shape[1]), name, layers, predict, make)


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):  # nested backbones (keras.applications)
            out.extend(_all_layers(layer))
    return out


def _first_line(e: BaseException) -> str:
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


# ---------------------------------------------------------------------------------------------- calibration data


@dataclass
class CalibrationSet:
    """The calibration images (uint8, runtime preprocessing) and where they came from."""

    x: np.ndarray
    y: Optional[np.ndarray]
    source: str
    split: str
    available: int
    seed: int
    preprocessing: str = "edgedetect.preprocess.load_image (the runtime's), raw RGB 0-255"

    def counts(self) -> dict:
        if self.y is None:
            return {"unlabelled": int(len(self.x))}
        return {label: int((self.y == i).sum()) for i, label in enumerate(LABELS)}

    def describe(self) -> dict:
        return {
            "source": self.source,
            "split": self.split,
            "n": int(len(self.x)),
            "per_class": self.counts(),
            "available": self.available,
            "sampling": "equal numbers per class where available, drawn with numpy default_rng(seed)",
            "seed": self.seed,
            "preprocessing": self.preprocessing,
        }


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(n, len(y))`` items, as equal per class as the classes allow, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    pools = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    take = {c: 0 for c in classes}
    left = min(n, len(y))
    while left > 0:
        open_classes = [c for c in classes if take[c] < len(pools[c])]
        share = max(1, left // len(open_classes))
        for c in open_classes:
            add = min(share, len(pools[c]) - take[c], left)
            take[c] += add
            left -= add
            if not left:
                break
    return np.sort(np.concatenate([pools[c][: take[c]] for c in classes])) if len(y) else np.zeros(0, int)


def _labelled_folder(path: Path) -> bool:
    from edgedetect.data import classify, list_folder

    return any(classify(f.relpath)[1] is not None for f in list_folder(path))


def load_calibration(source: str | os.PathLike, input_size: int, n: int, seed: int = CALIB_SEED,
                     progress: bool = False) -> CalibrationSet:
    """``n`` calibration images from a dataset (its train split, or all splits when it has none) or a plain folder.

    Raises:
        EdgeDetectError: missing source, no images, or an archive without REAL/FAKE class folders.
    """
    from edgedetect.data import list_folder, load_dataset
    from edgedetect.preprocess import load_image

    path = Path(source)
    if not path.exists():
        raise EdgeDetectError(f"calibration data {path} not found; pass --calib with a dataset folder/.tar.gz/.zip "
                              "(REAL/FAKE class folders) or a folder of images")
    if path.is_dir() and not _labelled_folder(path):
        files = [f.path for f in list_folder(path)]  # the one lister: loop-safe, each folder once
        if not files:
            raise EdgeDetectError(f"calibration data {path}: no image files in it")
        idx = np.sort(np.random.default_rng(seed).permutation(len(files))[:n])
        images = []
        for i in idx:
            try:
                images.append(load_image(files[i], input_size))
            except ImageError:
                continue  # an unreadable file is simply not used for calibration
        if not images:
            raise EdgeDetectError(f"calibration data {path}: none of the sampled images could be read")
        return CalibrationSet(np.stack(images), None, str(path), "all (plain image folder)", len(files), seed)
    dataset = load_dataset(path, input_size, progress=progress)
    if "train" in dataset.splits:
        split_name, split = "train", dataset.splits["train"]
    else:
        names = list(dataset.splits)
        split_name = "+".join(names)
        split = dataset.splits[names[0]]
        for other in names[1:]:
            s = dataset.splits[other]
            split = type(split)(np.concatenate([split.x, s.x]), np.concatenate([split.y, s.y]), split.paths + s.paths)
    idx = stratified_sample(split.y, n, seed)
    return CalibrationSet(split.x[idx], split.y[idx].astype(int), str(path), split_name, len(split), seed)


def load_crop_calibration(sources: list, crop: int, n: int, max_crops: int, seed: int = CALIB_SEED,
                          progress: bool = False) -> CalibrationSet:
    """``n`` calibration crops for a native-resolution model: the runtime's crops of images drawn class-balanced
    from the run's sources (the same :func:`edgedetect.crops.native_crops` that predict uses)."""
    from training.native_data import fixed_crops, load_sources

    data, _ = load_sources(list(sources), progress=progress)
    images = data.subset(stratified_sample(np.asarray(data.y), n, seed))
    x, owner, y = fixed_crops(images, crop, max_crops)
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    calib = CalibrationSet(x[idx], y[owner[idx]].astype(int), ", ".join(map(str, sources)), "all sources", len(data), seed)
    calib.preprocessing = (f"edgedetect.crops.native_crops ({crop}-px crops at native resolution, up to {max_crops} "
                           f"per image), raw RGB 0-255; {n} crops from {len(images)} images")
    return calib


def _resolve_run_data(run: RunInfo) -> Optional[Path]:
    data = run.settings.get("data")
    if not data or not isinstance(data, str):
        return None
    for candidate in (Path(data), run.run_dir.parent.parent / data if run.run_dir else None):
        if candidate is not None and candidate.exists():
            return candidate
    return None


# ---------------------------------------------------------------------------------------------- outputs


def output_paths(model_path: Path, run: RunInfo, config: ConversionConfig) -> dict[str, Path]:
    """Where each precision goes: ``<folder>/<stem>_<precision>.tflite``.

    The stem is the model's (``model.keras`` -> ``model``); a run's ``best.keras``/``last.keras`` use the run
    folder's name, since "best_int8.tflite" says nothing once copied elsewhere.
    """
    stem = model_path.name if model_path.is_dir() else model_path.stem
    if run.run_dir is not None and stem in ("best", "last"):
        stem = run.run_dir.name + ("" if stem == "best" else "_last")
    if config.out and str(config.out).lower().endswith(".tflite"):
        return {config.precisions[0]: Path(config.out)}
    folder = Path(config.out) if config.out else model_path.parent
    return {p: folder / f"{stem}_{p}.tflite" for p in config.precisions}


def debug_csv_path(int8_path: Path) -> Path:
    return int8_path.with_name(f"{int8_path.stem}_debug.csv")


# ---------------------------------------------------------------------------------------------- conversion


@contextlib.contextmanager
def _quiet(enabled: bool = True):
    """Silence the converter's C++ and Python chatter (fd-level) while it runs; errors still raise."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(open(os.devnull, "w")) as null, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TF's deprecation and "statistics not specified" notices
                try:
                    yield
                finally:
                    null.close()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


_NON_BUILTIN = re.compile(r"flex op|custom op|select tf|needs_flex|needs_custom", re.IGNORECASE)


def _run_converter(convert_fn: Callable[[], bytes], model_path: Path) -> bytes:
    """Run one conversion, turning converter failures into one clear line."""
    try:
        from tensorflow.lite.python.convert_phase import ConverterError
    except ImportError:  # moved in some TF releases
        ConverterError = RuntimeError
    try:
        with _quiet():
            return convert_fn()
    except (ConverterError, ValueError, RuntimeError) as e:
        text = str(e)
        if _NON_BUILTIN.search(text):
            ops = sorted(set(re.findall(r"'tf\.(\w+)' op", text)) | set(re.findall(r"Flex(\w+)", text)))
            raise EdgeDetectError(
                f"{model_path}: uses TensorFlow ops with no builtin TFLite kernel ({', '.join(ops) or 'see the converter log'}); "
                "edgedetect writes builtin-only models (no Flex/Select-TF ops) so the interpreter-only runtime can run "
                "them: replace those layers with builtin ones and export again"
            ) from None
        if "quantiz" in text.lower():
            raise EdgeDetectError(f"{model_path}: int8 quantization failed ({_converter_error_line(text)}); "
                                  "try --keep-float with the op named, or --quant dynamic") from None
        raise EdgeDetectError(f"{model_path}: TFLite conversion failed ({_converter_error_line(text)})") from None


def _converter_error_line(text: str) -> str:
    for line in text.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:300]
    return (text.strip().splitlines() or ["unknown error"])[0][:300]


def _representative(x: np.ndarray) -> Callable:
    def dataset():
        for i in range(len(x)):
            yield [x[i : i + 1].astype(np.float32)]

    return dataset


def _convert_float(src: _Source, precision: str) -> bytes:
    import tensorflow as tf

    converter = src.make_converter()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision in ("fp16", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    return _run_converter(converter.convert, src.path)


def _int8_converter(src: _Source, calib: CalibrationSet, io: str):
    import tensorflow as tf

    converter = src.make_converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(calib.x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float":
        converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    return converter


def _convert_int8(src: _Source, calib: CalibrationSet, config: ConversionConfig,
                  keep_float: tuple[str, ...]) -> tuple[bytes, list, dict]:
    import tensorflow as tf

    if not (config.debug or keep_float):
        converter = _int8_converter(src, calib, config.io)
        return _run_converter(converter.convert, src.path), [], {"ops": [], "nodes": []}
    from conversion.debug import quantize_int8

    result = {}

    def run():
        # The debugger calibrates in float-I/O mode; integer I/O is applied to its result.
        result["value"] = quantize_int8(lambda: _int8_converter(src, calib, "float"), _representative(calib.x),
                                        keep_float=keep_float, layer_names=src.layer_names, debug=config.debug,
                                        io_type=None if config.io == "float" else getattr(tf, config.io))
        return b""

    _run_converter(run, src.path)
    return result["value"]


def _keep_float(config: ConversionConfig, fp32_model: bytes, log: Log) -> tuple[str, ...]:
    if config.keep_float is not None:
        return tuple(config.keep_float)
    from conversion.debug import model_ops

    present = {o["op"] for o in model_ops(fp32_model)}
    auto = tuple(op for op in AUTO_KEEP_FLOAT if op in present)
    if auto and config.io == "float":
        log(f"int8: keeping {', '.join(auto)} in float (XNNPACK has no int8 kernel for it; fully integer, the model "
            "splits into many delegate parts and runs slower than fp32). --keep-float none: full integer")
        return auto
    return ()


def _metadata(src: _Source, run: RunInfo, precision: str, io: str, threshold: float, arch: str,
              calibration: Optional[dict]) -> ModelMetadata:
    preprocessing = dict(PREPROCESSING)
    in_graph = run.config.get("preprocessing") or run.settings.get("preprocessing")
    if not in_graph and arch != "unknown":
        from training.model_spec import get_spec

        in_graph = get_spec(arch).preprocessing
    if in_graph:
        preprocessing["normalisation"] = f"inside the model graph: {in_graph}"
    front = run.settings.get("front", "none")
    if front != "none":
        from training.model_spec import get_front

        preprocessing["front_end"] = f"inside the model graph: {get_front(front)[0]}"
    if run.settings.get("preprocess") == "crops":
        from edgedetect.crops import CROP_ALIGN

        preprocessing.update(
            mode="crops", resize=None, max_crops=int(run.metrics.get("max_crops", run.settings.get("max_crops", 16))),
            combine=run.metrics.get("combine", "mean"),
            crops=(f"{src.input_size}-px crops of the image at its own resolution (never resized) on an even grid "
                   f"covering it, offsets multiples of {CROP_ALIGN}, at most max_crops; p_fake = combine of the crops' "
                   "p_fake (edgedetect.crops)"),
            small_images=f"a side under {src.input_size} px is mirror-padded to it and the result carries a warning")
    else:
        preprocessing["mode"] = "resize"
    training, metrics = {}, {}
    if run.run_dir is not None:
        command = run.config.get("command")
        training = {"run": str(run.run_dir), "data": run.settings.get("data"),
                    "command": " ".join(command) if isinstance(command, list) else command,
                    "dataset": run.config.get("dataset"), "settings": run.settings,
                    "versions": run.config.get("versions")}
        for key in ("best_epoch", "epochs_run", "train_seconds", "params"):
            if key in run.metrics:
                training[key] = run.metrics[key]
        dataset = run.config.get("dataset") or {}
        if "image_sizes" in dataset:  # what the model saw; the runtime warns far outside it
            training["image_sizes"] = dataset["image_sizes"]
            training["sources"] = list(dataset.get("counts", {}).get("train", {}))
        metrics = _labelled_metrics(run)
    return ModelMetadata(
        input_size=src.input_size, precision=precision, threshold=float(threshold), labels=list(LABELS), io=io,
        preprocessing=preprocessing, arch=arch, training=training, metrics=metrics,
        source_model={"path": str(src.path.resolve()), "sha256": sha256_of(src.path), "format": src.kind},
        calibration=calibration,
    )


def _labelled_metrics(run: RunInfo) -> dict:
    m, data = run.metrics, run.settings.get("data")
    if not m:
        return {}
    val_kind = "val (carved from train)" if run.config.get("dataset", {}).get("val") == "carved from train" else "val"
    out = {"measured_on": "the Keras source model, before conversion", "threshold": m.get("threshold"),
           "threshold_method": m.get("threshold_method")}
    for key, split in (("val", val_kind), ("val_at_0.5", f"{val_kind}, threshold 0.5"), ("test", "test")):
        if key in m:
            out[key] = {"dataset": data, "split": split, **m[key]}
    return out


def _arch(src: _Source, run: RunInfo) -> str:
    arch = run.settings.get("arch")
    if arch:
        return arch
    from training.model_spec import REGISTRY

    # build_model names models "<arch>_<img_size>".
    base = re.sub(r"_\d+$", "", src.name or "")
    return base if base in REGISTRY else "unknown"


def _check(path: Path, ref: np.ndarray, calib: Optional[CalibrationSet], threshold: float, out: OutputReport) -> None:
    from edgedetect.runtime import Classifier

    clf = Classifier(path)
    p = clf.predict(calib.x)
    diff = np.abs(p - ref)
    out.max_abs_diff, out.mean_abs_diff = float(diff.max()), float(diff.mean())
    out.flips, out.n_checked = int(((p >= threshold) != (ref >= threshold)).sum()), len(p)
    if calib.y is not None:
        out.accuracy = float(((p >= threshold) == (calib.y == 1)).mean())


def _calibration_source(config: ConversionConfig, run: RunInfo, int8: bool) -> tuple[Optional[Path], Optional[str]]:
    """``(path, where it came from)`` of the calibration/check images; raises when int8 has none."""
    calib_source, calib_origin = (Path(config.calib), "--calib") if config.calib else (None, None)
    if calib_source is None and run.run_dir is not None:
        calib_source = _resolve_run_data(run)
        calib_origin = "the run's training data"
        if calib_source is None and int8:
            raise EdgeDetectError(f"the run's training data ({run.settings.get('data')}) is not found from here; "
                                  "int8 needs calibration images: pass --calib DATA")
    if int8 and calib_source is None:
        raise EdgeDetectError(f"int8 needs calibration data and none was given: pass --calib with a dataset "
                              f"(folder/.tar.gz/.zip with REAL/FAKE folders) or a folder of images, "
                              f"~{DEFAULT_NUM_CALIB} of which are used; int8 is never calibrated on random noise")
    if calib_source is not None and not calib_source.exists():
        raise EdgeDetectError(f"calibration data {calib_source} not found; pass --calib with a dataset folder/"
                              ".tar.gz/.zip (REAL/FAKE class folders) or a folder of images")
    return calib_source, calib_origin


def convert(model_path: Optional[str | os.PathLike], config: ConversionConfig, log: Optional[Log] = None,
            progress: bool = False) -> ConversionReport:
    """Convert a .keras file or SavedModel folder to .tflite files described by ``config``.

    Args:
        model_path: .keras file or SavedModel folder; None: the latest training run's best.keras.
        config: precisions, calibration, outputs (see :class:`ConversionConfig`).
        log: receives one line per notable step (which model and data, warnings); default: stderr.
        progress: show a progress bar while decoding calibration images.

    Returns:
        The report: written paths, sizes and agreement with the source model.

    Raises:
        EdgeDetectError: bad options, missing model or calibration data, outputs that exist (without force),
            a model needing non-builtin ops, or a failed conversion.
    """
    log = log or _stderr
    config.validate()
    path = resolve_model(model_path, log)
    run = run_info(path)
    targets = output_paths(path, run, config)
    int8 = "int8" in targets
    to_check = [*targets.values(), *(sidecar_path(p) for p in targets.values())]
    if int8 and config.debug:
        to_check.append(debug_csv_path(targets["int8"]))
    out_folder = next(iter(targets.values())).parent
    if config.out and not str(config.out).lower().endswith(".tflite") and not out_folder.exists():
        out_folder.mkdir(parents=True)
    for target in to_check:  # every output before any work: never half a set of files
        check_writable(target, config.force)

    crops_run = run.settings.get("preprocess") == "crops"
    if crops_run and not config.calib:  # native-resolution run: calibrate on its own sources' crops
        calib_source, calib_origin = None, "the run's training sources"
    else:
        calib_source, calib_origin = _calibration_source(config, run, int8)

    with _quiet():
        src = _load_source(path)
    arch = _arch(src, run)
    threshold = float(run.metrics.get("threshold", 0.5))
    notes: list[str] = []
    calib = None
    if crops_run and not config.calib and (int8 or config.check):
        calib = load_crop_calibration(run.settings["data"], src.input_size, config.num_calib,
                                      int(run.metrics.get("max_crops", run.settings.get("max_crops", 16))), config.seed,
                                      progress=progress)
    elif calib_source is not None and (int8 or config.check):
        calib = load_calibration(calib_source, src.input_size, config.num_calib, config.seed, progress=progress)
    if calib is not None:
        use = "calibration and agreement check" if int8 else "agreement check"
        log(f"data: {calib.source} ({calib_origin}), split {calib.split}: {len(calib.x)} images "
            f"{calib.counts()} of {calib.available}, seed {calib.seed}, for {use}")
        if int8 and len(calib.x) < MIN_SENSIBLE_CALIB:
            notes.append(f"warning: only {len(calib.x)} calibration images; int8 ranges from fewer than "
                         f"{MIN_SENSIBLE_CALIB} may clip real inputs, use more (--num-calib {DEFAULT_NUM_CALIB} is the default)")
            log(notes[-1])
    elif config.check:
        notes.append("no images to check agreement on: pass --calib DATA to compare the files with the source model")

    calibration_meta = calib.describe() if (int8 and calib is not None) else None
    blobs: dict[str, bytes] = {}
    debug_rows, kept = [], {"ops": [], "nodes": []}
    keep_float: tuple[str, ...] = ()
    for precision in PRECISIONS:  # fp32 always (and first): the reference size, and its ops decide AUTO_KEEP_FLOAT
        if precision == "int8" and int8:
            keep_float = _keep_float(config, blobs["fp32"], log)
            blobs["int8"], debug_rows, kept = _convert_int8(src, calib, config, keep_float)
        elif precision in targets or precision == "fp32":
            blobs[precision] = _convert_float(src, precision)
    fp32_size = len(blobs["fp32"])

    # Everything is verified before anything is written: a failure leaves no partial set of files.
    from conversion.debug import delegate_partitions, float_compute_ops, io_dtypes

    planned = []
    for precision, target in targets.items():
        data, io, float_ops, meta_calib = blobs[precision], "float", {}, None
        if precision == "int8":
            io = config.io
            want = ("float32", "float32") if io == "float" else (io, io)
            if io_dtypes(data) != want:  # a bug, not a user mistake: the file would not be what it says
                raise RuntimeError(f"int8 conversion produced I/O {io_dtypes(data)}, expected {want}")
            float_ops = dict(float_compute_ops(data))
            meta_calib = dict(calibration_meta or {})
            if kept["ops"] or kept["nodes"]:
                meta_calib["keep_float"] = {"requested": list(keep_float), "ops": kept["ops"],
                                            "nodes": kept["nodes"], "float_ops_in_model": float_ops}
                missing = [op for op in kept["ops"] if op not in float_ops]
                if missing:
                    notes.append(f"warning: --keep-float {', '.join(missing)}: the converter quantized them anyway")
                    log(notes[-1])
        meta = _metadata(src, run, precision, io, threshold, arch, meta_calib)
        planned.append((OutputReport(precision, target, len(data), io, float_ops=float_ops), data, meta))
    for report, data, meta in planned:
        atomic_write_bytes(report.path, data)
        write_metadata(report.path, meta)

    ref = src.predict(calib.x) if calib is not None and config.check else None
    outputs = [report for report, _, _ in planned]
    for report in outputs:
        with _quiet():
            report.delegate_partitions = delegate_partitions(report.path)
            if ref is not None:
                _check(report.path, ref, calib, threshold, report)

    debug_csv = None
    if debug_rows:
        from conversion.debug import write_debug_csv

        debug_csv = write_debug_csv(debug_csv_path(targets["int8"]), debug_rows)
    ref_acc = float(((ref >= threshold) == (calib.y == 1)).mean()) if ref is not None and calib.y is not None else None
    return ConversionReport(path, arch, src.input_size, threshold, outputs, fp32_size, calibration_meta, ref_acc,
                            debug_csv, debug_rows, notes)
