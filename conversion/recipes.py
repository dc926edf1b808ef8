"""The converter recipes: one per precision of :data:`edgedetect.precision.TABLE`, run quietly, builtin ops only,
every converter failure turned into one clear line."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from edgedetect.errors import EdgeDetectError
from conversion.calibration import CalibrationSet
from conversion.source import Log, Source

if TYPE_CHECKING:
    from conversion.convert import ConversionConfig

# XNNPACK has no int8 HARD_SWISH: a full-integer MobileNetV3 falls apart into ~20 delegate parts and runs slower
# than its fp32 (measured in benchmarks/conversion.md); with HARD_SWISH in float it is one part and the fastest.
# Integer I/O (microcontrollers, NPUs) means integer-only hardware, so there the default stays full integer.
AUTO_KEEP_FLOAT = ("HARD_SWISH",)


@contextlib.contextmanager
def quiet(enabled: bool = True):
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


def run_converter(convert_fn: Callable[[], bytes], model_path: Path) -> bytes:
    """Run one conversion, turning converter failures into one clear line."""
    try:
        from tensorflow.lite.python.convert_phase import ConverterError
    except ImportError:  # moved in some TF releases
        ConverterError = RuntimeError
    try:
        with quiet():
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


def convert_float(src: Source, precision: str) -> bytes:
    """The recipe of a precision that needs no calibration: fp32, fp16 (float16 weights) or dynamic (int8 weights)."""
    import tensorflow as tf

    converter = src.make_converter()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision in ("fp16", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    return run_converter(converter.convert, src.path)


def _int8_converter(src: Source, calib: CalibrationSet, io: str):
    import tensorflow as tf

    converter = src.make_converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(calib.x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float":
        converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    return converter


def convert_int8(src: Source, calib: CalibrationSet, config: ConversionConfig,
                 keep_float: tuple[str, ...]) -> tuple[bytes, list, dict]:
    """The full-integer recipe, calibrated on ``calib.x``: ``(model, debugger rows, ops/nodes kept in float)``."""
    import tensorflow as tf

    if not (config.debug or keep_float):
        converter = _int8_converter(src, calib, config.io)
        return run_converter(converter.convert, src.path), [], {"ops": [], "nodes": []}
    from conversion.debug import quantize_int8

    result = {}

    def run():
        # The debugger calibrates in float-I/O mode; integer I/O is applied to its result.
        result["value"] = quantize_int8(lambda: _int8_converter(src, calib, "float"), _representative(calib.x),
                                        keep_float=keep_float, layer_names=src.layer_names, debug=config.debug,
                                        io_type=None if config.io == "float" else getattr(tf, config.io))
        return b""

    run_converter(run, src.path)
    return result["value"]


def keep_float_ops(config: ConversionConfig, fp32_model: bytes, log: Log, front=None) -> tuple[str, ...]:
    """What the int8 file keeps in float: ``config.keep_float``, else the :data:`AUTO_KEEP_FLOAT` ops the model
    has and the ops of its front end (``front``: a ``training.model_spec.Front``, or None)."""
    if config.keep_float is not None:
        return tuple(config.keep_float)
    if config.io != "float":
        return ()
    from conversion.debug import model_ops

    present = {o["op"] for o in model_ops(fp32_model)}
    auto = tuple(op for op in AUTO_KEEP_FLOAT if op in present)
    if auto:
        log(f"int8: keeping {', '.join(auto)} in float (XNNPACK has no int8 kernel for it; fully integer, the model "
            "splits into many delegate parts and runs slower than fp32). --keep-float none: full integer")
    ops = tuple(op for op in front.float_ops if op in present and op not in auto) if front is not None else ()
    if ops:
        log(f"int8: keeping the front end's ops ({', '.join(ops)}) in float: its small residual would lose most of "
            "its values to one int8 scale. --keep-float none: full integer")
    return auto + ops


