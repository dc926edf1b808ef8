"""Compute per image of a .tflite model: multiply-accumulates counted from its tensor shapes (interpreter only).

Counted: CONV_2D (out H x W x Cout x kh x kw x Cin), DEPTHWISE_CONV_2D (out H x W x C x kh x kw),
FULLY_CONNECTED (rows x units x inputs), TRANSPOSE_CONV (in H x W x Cin x kh x kw x Cout) and BATCH_MATMUL.
Element-wise ops, pooling and activations are left out: they are a rounding error next to these in a CNN, and
MACs is the figure model cards compare. Shapes are those of the allocated interpreter, per image (batch left out).
"""

from __future__ import annotations

import os

import numpy as np

COUNTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")


def count_macs(interp) -> int | None:
    """Multiply-accumulates of one image through an allocated interpreter (LiteRT/tflite_runtime/tf.lite), or
    None when the interpreter cannot list its ops (no ``_get_ops_details``, as in old tflite_runtime)."""
    if not hasattr(interp, "_get_ops_details"):
        return None
    shapes = {d["index"]: [int(v) for v in d["shape"]] for d in interp.get_tensor_details()}
    total = 0
    for op in interp._get_ops_details():
        name = op["op_name"]
        if name not in COUNTED_OPS:
            continue
        ins = [shapes.get(int(i)) for i in op["inputs"] if int(i) >= 0]
        out = shapes.get(int(op["outputs"][0]))
        if out is None or len(ins) < 2 or ins[0] is None or ins[1] is None:
            continue
        per_image_out = int(np.prod(out[1:-1])) if len(out) > 1 else 1  # H x W (conv) or rows (dense)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            # one MAC per weight per output position: filter [Cout, kh, kw, Cin], [1, kh, kw, C], [units, inputs]
            total += per_image_out * int(np.prod(ins[1]))
        elif name == "TRANSPOSE_CONV":  # inputs: output shape, filter [Cout, kh, kw, Cin], input [N, H, W, Cin]
            if len(ins) >= 3 and ins[2] is not None:
                total += int(np.prod(ins[2][1:-1])) * int(np.prod(ins[1]))
        elif name == "BATCH_MATMUL":  # [.., M, K] x [.., K, N] -> per image M x N x K
            total += int(np.prod(out[1:])) * ins[0][-1]
    return total


def model_macs(model_path: str | os.PathLike) -> int | None:
    """:func:`count_macs` of a .tflite file, or None when the interpreter cannot list its ops."""
    from edgedetect.interpreter import load_interpreter

    return count_macs(load_interpreter(str(model_path), 1))
