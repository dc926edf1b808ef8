"""Quantization debugging and selective quantization for int8 conversion.

* :func:`quantize_int8` calibrates once through TensorFlow's ``QuantizationDebugger`` and returns the int8
  model, optionally with some ops or layers left in float (``--keep-float``), and the per-layer error table
  (``--debug``): RMSE / scale, i.e. the quantization error of a layer's output in units of its own
  quantization step, so layers of different ranges compare.
* :func:`model_ops` lists the ops of a .tflite model with the dtype they compute in, which is how a
  "kept float" op is verified and how an int8 model is checked for float islands.
* :func:`delegate_partitions` counts the pieces XNNPACK splits a model into. XNNPACK has no int8 HARD_SWISH,
  so a fully int8 MobileNetV3 falls apart into ~20 pieces with the interpreter's reference kernels between
  them; keeping HARD_SWISH in float makes it one piece again.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_text

# Ops that convert between float and int8 at the edges of float islands; they are not "kept float" compute.
BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
DEBUG_COLUMNS = ("rank", "op_name", "tensor_name", "rmse/scale", "rmse", "scale", "max_abs_error", "mean_error",
                 "num_elements")


def builtin_op_names() -> set[str]:
    """Every TFLite builtin operator name (``CONV_2D``, ``HARD_SWISH``, ...)."""
    from tensorflow.lite.python import schema_py_generated as schema

    return {name for name in vars(schema.BuiltinOperator) if name.isupper()}


def _interpreter(model: bytes | str | Path, delegates: bool):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # conversion always has TensorFlow; its interpreter is the fallback
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    kwargs = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    if not delegates:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(num_threads=1, **kwargs)


def model_ops(model: bytes | str | Path) -> list[dict]:
    """The model's ops in execution order: ``{"op", "dtype" (of its first output), "output" (tensor name)}``."""
    interp = _interpreter(model, delegates=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = []
    for op in interp._get_ops_details():  # the only API that lists ops; stable across TF/LiteRT releases
        out = tensors.get(op["outputs"][0]) if len(op["outputs"]) else None
        ops.append({"op": op["op_name"], "dtype": np.dtype(out["dtype"]).name if out else "none",
                    "output": out["name"] if out else ""})
    return ops


def io_dtypes(model: bytes | str | Path) -> tuple[str, str]:
    """``(input dtype, output dtype)`` names of a single-input, single-output model."""
    interp = _interpreter(model, delegates=False)
    return (np.dtype(interp.get_input_details()[0]["dtype"]).name, np.dtype(interp.get_output_details()[0]["dtype"]).name)


def float_compute_ops(model: bytes | str | Path) -> Counter:
    """How many ops of each type compute in float (QUANTIZE/DEQUANTIZE not counted)."""
    return Counter(o["op"] for o in model_ops(model) if o["dtype"].startswith("float") and o["op"] not in BOUNDARY_OPS)


def delegate_partitions(model_path: str | Path) -> int:
    """How many pieces the default XNNPACK delegate takes over (1 = the whole model runs in XNNPACK)."""
    interp = _interpreter(model_path, delegates=True)
    interp.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in interp._get_ops_details())


def layer_pattern(layer: str) -> re.Pattern:
    """Matches TFLite tensor names that come from Keras layer ``layer``.

    The converter names tensors by TF name scope: ``model_1/block2_conv1_1/convolution`` for layer
    ``block2_conv1`` (scopes get a ``_N`` suffix when traced again), and fused ops join several names with ``;``.
    """
    return re.compile(rf"(^|[/;]){re.escape(layer)}(_\d+)?(/|;|:|$)")


def split_keep_float(names: Sequence[str], tensor_names: Iterable[str], layer_names: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """``--keep-float`` names -> ``(denylisted_ops, denylisted_nodes)`` for the quantizer.

    Upper-case builtin op names (``HARD_SWISH``) are op types; any other name is a Keras layer (or a TFLite tensor
    name) and is expanded to the tensor names of the calibrated model that it matches (Keras layer names are
    lower-case, so the two never collide).

    Raises:
        EdgeDetectError: a name that is neither an op of the model nor a layer/tensor of it.
    """
    builtins = builtin_op_names()
    tensor_names = list(tensor_names)
    ops, nodes = [], []
    for name in names:
        if name.isupper() and name in builtins:
            ops.append(name)
            continue
        matched = [t for t in tensor_names if t == name] or [t for t in tensor_names if layer_pattern(name).search(t)]
        if not matched:
            shown = ", ".join(list(layer_names)[:12]) or ", ".join(tensor_names[:8])
            raise EdgeDetectError(
                f"--keep-float {name}: not a TFLite op name and no layer or tensor of this model is called that. "
                f"Valid: op names such as HARD_SWISH, CONV_2D, or layer names ({shown}, ...)"
            )
        nodes.extend(t for t in matched if t not in nodes)
    return ops, nodes


def _layer_rows(debugger) -> list[dict]:
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    rows = []
    for row in csv.DictReader(buf):
        mse, scale = float(row["mean_squared_error"]), float(row["scale"])
        rmse = math.sqrt(mse) if mse >= 0 else float("nan")
        rows.append({"op_name": row["op_name"], "tensor_name": row["tensor_name"],
                     "rmse/scale": rmse / scale if scale else float("nan"), "rmse": rmse, "scale": scale,
                     "max_abs_error": float(row["max_abs_error"]), "mean_error": float(row["mean_error"]),
                     "num_elements": int(float(row["num_elements"]))})
    rows.sort(key=lambda r: -np.nan_to_num(r["rmse/scale"], nan=-1.0))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def quantize_int8(
    make_converter: Callable,
    dataset: Callable[[], Iterable[list[np.ndarray]]],
    keep_float: Sequence[str] = (),
    layer_names: Sequence[str] = (),
    debug: bool = False,
    io_type=None,
) -> tuple[bytes, list[dict], dict]:
    """Full-integer quantization through the quantization debugger.

    Args:
        make_converter: returns a fresh ``TFLiteConverter`` already set up for int8 (optimizations,
            representative dataset, supported ops).
        dataset: the representative dataset (also used to measure per-layer errors).
        keep_float: op names (``HARD_SWISH``) and/or layer names to leave in float.
        layer_names: the Keras model's layer names, for validating and explaining ``keep_float``.
        debug: also run the instrumented model and return the per-layer error table.
        io_type: ``tf.int8``/``tf.uint8`` for integer input and output tensors, None for float.

    Returns:
        ``(model bytes, rows sorted by RMSE/scale, descending (empty without debug), {"ops", "nodes"} denylisted)``.
    """
    import tensorflow as tf
    from tensorflow.lite.python import util

    debugger = tf.lite.experimental.QuantizationDebugger(converter=make_converter(), debug_dataset=dataset)
    tensor_names = [o["output"] for o in model_ops(debugger.calibrated_model)]
    ops, nodes = split_keep_float(keep_float, tensor_names, layer_names)
    if ops or nodes:
        present = {o["op"] for o in model_ops(debugger.calibrated_model)}
        missing = [op for op in ops if op not in present]
        if missing:
            raise EdgeDetectError(f"--keep-float {', '.join(missing)}: this model has no such op; "
                                  f"its ops are {', '.join(sorted(present))}")
        # Re-quantizes the calibrated model with the new deny lists; calibration is not repeated.
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=ops or None,
                                                                        denylisted_nodes=nodes or None)
    rows = []
    if debug:
        debugger.run()
        rows = _layer_rows(debugger)
    model = debugger.get_nondebug_quantized_model()
    if io_type is not None:
        hint = "the first or last op is kept in float; use --io float, or keep other ops float"
        try:
            model = util.modify_model_io_type(model, io_type, io_type)
        except (ValueError, RuntimeError) as e:
            raise EdgeDetectError(f"cannot make the input/output tensors {io_type.name}: {hint} ({e})") from None
        # The converter leaves a float tensor float without complaint when a kept-float op consumes or produces it.
        got = io_dtypes(model)
        if got != (io_type.name, io_type.name):
            raise EdgeDetectError(f"cannot make the input/output tensors {io_type.name} (got input {got[0]}, "
                                  f"output {got[1]}): {hint}")
    return model, rows, {"ops": ops, "nodes": nodes}


def write_debug_csv(path: str | Path, rows: list[dict]) -> Path:
    """The per-layer error table as CSV (largest RMSE/scale first), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, DEBUG_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())
    return Path(path)
