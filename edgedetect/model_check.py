"""Check a .tflite file before the interpreter sees it: a model file is untrusted input.

The interpreter (C++) trusts the flatbuffer it is given: a flipped byte can make it read out of bounds, free twice
or divide by zero, and a crash there takes the whole process down, which no ``try`` can catch. So a model is
checked in two steps:

1. :func:`check_model` walks the flatbuffer in pure Python (schema: ``tensorflow/lite/schema/schema.fbs``):
   every offset, vtable, vector and string lies inside the file; tensors name existing buffers, and a buffer
   that holds data holds exactly shape x dtype bytes; operators name existing operator codes and tensors, and
   every tensor they read is an input, a constant or made by an earlier operator; strides, dilations and pool
   sizes are at least 1; quantization parameters fit their tensor; every operator is a builtin on
   :data:`ALLOWED_OPS` (no custom operators).
2. :func:`probe_model` (where ``os.fork`` exists) loads the checked bytes and runs one invoke in a forked child,
   so a crash that the structural check did not foresee ends the child, not the caller.

Both raise :class:`ModelError` with the reason; :class:`edgedetect.runtime.Classifier` calls them.
"""

from __future__ import annotations

import math
import os
import signal
import struct
import time

from edgedetect.errors import EdgeDetectError

MAX_MODEL_BYTES = 1 << 30  # a detector for the edge is a few MB; this only keeps a wrong file from filling memory
MAX_TENSOR_BYTES = 1 << 30  # one tensor's shape x dtype; an absurd shape from a damaged file is refused, not allocated
PROBE_TIMEOUT_S = 60.0

# BuiltinOperator codes (schema.fbs) of the operators edgedetect runs: those of the shipped models and of Keras
# conversions of convolutional nets, and common element-wise and shape operators. No custom operators.
ALLOWED_OPS = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 5: "DEPTH_TO_SPACE",
    6: "DEQUANTIZE", 8: "FLOOR", 9: "FULLY_CONNECTED", 11: "L2_NORMALIZATION", 12: "L2_POOL_2D",
    13: "LOCAL_RESPONSE_NORMALIZATION", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 20: "RELU_N1_TO_1",
    21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 26: "SPACE_TO_DEPTH", 28: "TANH", 34: "PAD",
    39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 42: "DIV", 43: "SQUEEZE", 45: "STRIDED_SLICE", 47: "EXP", 49: "SPLIT",
    50: "LOG_SOFTMAX", 53: "CAST", 54: "PRELU", 55: "MAXIMUM", 56: "ARG_MAX", 57: "MINIMUM", 58: "LESS", 59: "NEG",
    60: "PADV2", 61: "GREATER", 62: "GREATER_EQUAL", 63: "LESS_EQUAL", 64: "SELECT", 65: "SLICE", 66: "SIN",
    67: "TRANSPOSE_CONV", 69: "TILE", 70: "EXPAND_DIMS", 71: "EQUAL", 72: "NOT_EQUAL", 73: "LOG", 74: "SUM",
    75: "SQRT", 76: "RSQRT", 77: "SHAPE", 78: "POW", 79: "ARG_MIN", 81: "REDUCE_PROD", 82: "REDUCE_MAX", 83: "PACK",
    88: "UNPACK", 89: "REDUCE_MIN", 90: "FLOOR_DIV", 92: "SQUARE", 93: "ZEROS_LIKE", 95: "FLOOR_MOD",
    97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU", 99: "SQUARED_DIFFERENCE", 100: "MIRROR_PAD", 101: "ABS",
    102: "SPLIT_V", 104: "CEIL", 105: "REVERSE_V2", 106: "ADD_N", 108: "COS", 111: "ELU", 114: "QUANTIZE",
    116: "ROUND", 117: "HARD_SWISH", 123: "SELECT_V2", 126: "BATCH_MATMUL", 130: "BROADCAST_TO", 150: "GELU",
    158: "SIGN", 36: "GATHER", 94: "FILL", 96: "RANGE", 152: "RELU_0_TO_1",
}
CUSTOM_OP = 32
# TensorType -> bytes per element, for the numeric types a classifier uses (schema.fbs numbering).
TENSOR_TYPES = {0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8),
                6: ("bool", 1), 7: ("int16", 2), 9: ("int8", 1), 10: ("float64", 8), 15: ("uint32", 4),
                16: ("uint16", 2)}
_CONV_OPS = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 67: "TRANSPOSE_CONV"}
_POOL_OPS = {1: "AVERAGE_POOL_2D", 12: "L2_POOL_2D", 17: "MAX_POOL_2D"}


class ModelError(EdgeDetectError):
    """The file is not a model edgedetect can run safely; the message is the reason, without the path."""


class _Flatbuffer:
    """Bounds-checked reads of a flatbuffer: every access that would leave the file raises ModelError."""

    def __init__(self, data: bytes):
        self.data = data
        self.n = len(data)

    def _get(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            raise ModelError(f"an offset points outside the file (byte {pos} of {self.n})")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int) -> "_Table":
        vtable = pos - self._get("<i", pos)
        vsize, tsize = self._get("<H", vtable), self._get("<H", vtable + 2)
        if vsize < 4 or vsize % 2 or pos + tsize > self.n:
            raise ModelError(f"a table at byte {pos} is malformed")
        self._get("<B", vtable + vsize - 1)
        return _Table(self, pos, vtable, vsize, tsize)

    def deref(self, pos: int) -> int:
        target = pos + self._get("<I", pos)
        if target >= self.n:
            raise ModelError(f"an offset points outside the file (byte {target} of {self.n})")
        return target

    def vector(self, pos: int, elem_size: int) -> tuple[int, int]:
        """``(start, length)`` of the vector at ``pos`` (which holds its length), checked to fit the file."""
        length = self._get("<I", pos)
        start = pos + 4
        if start + length * elem_size > self.n:
            raise ModelError(f"a vector at byte {pos} runs past the end of the file ({length} elements)")
        return start, length


class _Table:
    def __init__(self, fb: _Flatbuffer, pos: int, vtable: int, vsize: int, tsize: int):
        self.fb, self.pos, self.vtable, self.vsize, self.tsize = fb, pos, vtable, vsize, tsize

    def _field(self, index: int, size: int) -> int | None:
        slot = 4 + 2 * index
        if slot >= self.vsize:
            return None
        rel = self.fb._get("<H", self.vtable + slot)
        if rel == 0:
            return None
        if rel + size > self.tsize:
            raise ModelError(f"a field of the table at byte {self.pos} lies outside it")
        return self.pos + rel

    def scalar(self, index: int, fmt: str, default=0):
        at = self._field(index, struct.calcsize(fmt))
        return default if at is None else self.fb._get(fmt, at)

    def has(self, index: int) -> bool:
        return self._field(index, 4) is not None

    def table(self, index: int) -> _Table | None:
        at = self._field(index, 4)
        return None if at is None else self.fb.table(self.fb.deref(at))

    def vector(self, index: int, elem_size: int) -> tuple[int, int]:
        at = self._field(index, 4)
        return (0, 0) if at is None else self.fb.vector(self.fb.deref(at), elem_size)

    def ints(self, index: int, fmt: str = "<i") -> list[int]:
        start, length = self.vector(index, struct.calcsize(fmt))
        size = struct.calcsize(fmt)
        return [struct.unpack_from(fmt, self.fb.data, start + i * size)[0] for i in range(length)]

    def floats(self, index: int) -> list[float]:
        return self.ints(index, "<f")

    def tables(self, index: int) -> list[_Table]:
        start, length = self.vector(index, 4)
        return [self.fb.table(self.fb.deref(start + 4 * i)) for i in range(length)]

    def string(self, index: int) -> bytes | None:
        at = self._field(index, 4)
        if at is None:
            return None
        start, length = self.fb.vector(self.fb.deref(at), 1)
        return self.fb.data[start : start + length]


def _check_tensor(i: int, t: _Table, n_buffers: int, buffer_sizes: list[int]) -> tuple[list[int], bool]:
    shape = t.ints(0)
    kind = t.scalar(1, "<b")
    if kind not in TENSOR_TYPES:
        raise ModelError(f"tensor {i} has an unsupported type (code {kind})")
    if any(d < 0 for d in shape):
        raise ModelError(f"tensor {i} has a negative dimension in its shape {shape}")
    name, itemsize = TENSOR_TYPES[kind]
    n_bytes = math.prod(shape) * itemsize
    if n_bytes > MAX_TENSOR_BYTES:
        raise ModelError(f"tensor {i} of shape {shape} ({name}) would take {n_bytes:,} bytes")
    buffer = t.scalar(2, "<I")
    if buffer >= n_buffers:
        raise ModelError(f"tensor {i} names buffer {buffer}, but the file has {n_buffers}")
    t.string(3)  # the name must lie inside the file (the interpreter reads it)
    sparse = t.has(6)
    if buffer_sizes[buffer] and not sparse and buffer_sizes[buffer] != n_bytes:
        raise ModelError(f"tensor {i} of shape {shape} ({name}) needs {n_bytes} bytes, but its buffer {buffer} "
                         f"holds {buffer_sizes[buffer]}")
    q = t.table(4)
    if q is not None:
        scales, zeros = q.floats(2), q.ints(3, "<q")
        q.floats(0), q.floats(1)
        if not all(math.isfinite(s) for s in scales):
            raise ModelError(f"tensor {i} has a quantization scale that is not a finite number")
        if zeros and len(zeros) != len(scales):
            raise ModelError(f"tensor {i} has {len(scales)} quantization scales but {len(zeros)} zero points")
        if len(scales) > 1:
            axis = q.scalar(6, "<i")
            if not 0 <= axis < len(shape) or shape[axis] != len(scales):
                raise ModelError(f"tensor {i} of shape {shape} has {len(scales)} per-channel scales along axis {axis}")
    return shape, buffer_sizes[buffer] > 0


def _check_options(j: int, op: _Table, code: int) -> None:
    options = op.table(4)
    if code in _CONV_OPS or code in _POOL_OPS:
        if options is None:
            raise ModelError(f"operator {j} ({ALLOWED_OPS[code]}) has no options (strides)")
        fields = {3: (1, 2, 4, 5), 4: (1, 2, 5, 6), 67: (1, 2)}.get(code, (1, 2, 3, 4))  # strides, dilations/filter
        for f in fields:
            default = 1 if code in (3, 4) and f >= 4 else 0  # dilations default to 1 in the schema
            value = options.scalar(f, "<i", default)
            if value < 1:
                raise ModelError(f"operator {j} ({ALLOWED_OPS[code]}) has a stride, dilation or window of {value}")
    elif options is not None:
        options.vsize  # noqa: B018 -- parsing the table checked that it lies inside the file


def check_model(data: bytes) -> None:
    """Raise ModelError when ``data`` is not a well-formed TFLite model made of allowed builtin operators."""
    if len(data) < 8:
        raise ModelError(f"{len(data)} bytes, too short for a TFLite file")
    if data[4:8] != b"TFL3":
        raise ModelError("no TFL3 identifier at byte 4; not a TFLite flatbuffer")
    fb = _Flatbuffer(data)
    model = fb.table(fb.deref(0))
    if model.scalar(0, "<I") != 3:
        raise ModelError(f"schema version {model.scalar(0, '<I')}, expected 3")
    buffer_sizes = []
    for k, b in enumerate(model.tables(4)):
        start, length = b.vector(0, 1)
        offset, size = b.scalar(1, "<Q"), b.scalar(2, "<Q")
        if offset > 1 and offset + size > len(data):
            raise ModelError(f"buffer {k} lies outside the file")
        buffer_sizes.append(length if length else (size if offset > 1 else 0))
    codes = []
    for k, c in enumerate(model.tables(1)):
        code = max(c.scalar(0, "<b"), c.scalar(3, "<i"))
        if code == CUSTOM_OP or c.string(1) is not None:
            name = (c.string(1) or b"?").decode("ascii", "replace")
            raise ModelError(f"uses the custom operator {name!r}; edgedetect runs builtin operators only")
        if code not in ALLOWED_OPS:
            raise ModelError(f"uses the operator with code {code}, which edgedetect does not run "
                             "(allowed: the builtin operators of image classifiers, see edgedetect.model_check)")
        codes.append(code)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise ModelError("it has no subgraph")
    for s, graph in enumerate(subgraphs):
        tensors = graph.tables(0)
        info = [_check_tensor(i, t, len(buffer_sizes), buffer_sizes) for i, t in enumerate(tensors)]
        n = len(tensors)
        inputs, outputs = graph.ints(1), graph.ints(2)
        for role, ids in (("input", inputs), ("output", outputs)):
            if not ids or any(not 0 <= i < n for i in ids):
                raise ModelError(f"subgraph {s} has {role} tensor indices {ids[:8]} outside its {n} tensors")
        ready = set(inputs) | {i for i, (_, constant) in enumerate(info) if constant}
        ready |= {i for i, t in enumerate(tensors) if t.scalar(5, "<B")}  # variables
        for j, op in enumerate(graph.tables(3)):
            k = op.scalar(0, "<I")
            if k >= len(codes):
                raise ModelError(f"operator {j} names operator code {k}, but the file has {len(codes)}")
            op_in, op_out = op.ints(1), op.ints(2)
            for i in op_in + op.ints(8):
                if i != -1 and not 0 <= i < n:
                    raise ModelError(f"operator {j} reads tensor {i}, but subgraph {s} has {n}")
            for i in op_out:
                if not 0 <= i < n:
                    raise ModelError(f"operator {j} writes tensor {i}, but subgraph {s} has {n}")
            missing = [i for i in op_in if i != -1 and i not in ready]
            if missing:
                raise ModelError(f"operator {j} ({ALLOWED_OPS[codes[k]]}) reads tensor {missing[0]}, which has no "
                                 "data: it is no input, no constant and made by no earlier operator")
            _check_options(j, op, codes[k])
            ready.update(op_out)
        missing = [i for i in outputs if i not in ready]
        if missing:
            raise ModelError(f"output tensor {missing[0]} of subgraph {s} is never computed")


def probe_model(data: bytes, invoke) -> None:
    """Run ``invoke(data)`` (load the model, run it once) in a forked child, so that a native crash ends the child.

    ``invoke`` raises on a problem (its first line becomes the reason); the child's exit code and signal tell
    the rest. Without ``os.fork`` (Windows) nothing is probed.

    Raises:
        ModelError: the child crashed, hung or raised.
    """
    if not hasattr(os, "fork"):
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python cleanup, no output (LiteRT's INFO line is printed once, by the parent)
        code = 0
        try:
            os.close(read_end)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            invoke(data)
        except BaseException as e:  # noqa: BLE001 -- every failure is reported to the parent
            lines = str(e).strip().splitlines()
            os.write(write_end, (lines[0] if lines else type(e).__name__).encode("utf-8", "replace")[:500])
            code = 3
        os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise ModelError(f"one invoke did not finish in {PROBE_TIMEOUT_S:.0f} s")
            time.sleep(0.002)
    except BaseException:
        try:  # interrupted: leave no child behind
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise
    finally:
        with os.fdopen(read_end, "rb") as f:
            message = f.read().decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals.__members__.values() else str(sig)
        raise ModelError(f"the interpreter crashes on it ({name})")
    if os.WEXITSTATUS(status) != 0:
        raise ModelError(message or f"the interpreter fails on it (exit {os.WEXITSTATUS(status)})")


def read_model_file(path) -> bytes:
    """The bytes of the model file ``path``, read once (the bytes checked are the bytes run).

    Raises:
        EdgeDetectError: missing, a folder, not a regular file (a pipe, a device such as /dev/zero), unreadable,
            or larger than :data:`MAX_MODEL_BYTES`.
    """
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        broken = " (broken symlink)" if os.path.islink(path) else ""
        raise EdgeDetectError(f"{path}: model not found{broken}") from None
    except OSError as e:
        raise EdgeDetectError(f"{path}: cannot read the model ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise EdgeDetectError(f"{path}: model not found (it is a folder)")
    if not stat.S_ISREG(info.st_mode):
        raise EdgeDetectError(f"{path}: not a regular file (a pipe, socket or device); pass a .tflite file")
    if info.st_size > MAX_MODEL_BYTES:
        raise EdgeDetectError(f"{path}: not a valid TFLite model ({info.st_size:,} bytes; models over "
                              f"{MAX_MODEL_BYTES >> 20} MiB are refused)")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_MODEL_BYTES + 1)
    except OSError as e:
        raise EdgeDetectError(f"{path}: cannot read the model ({e.strerror or e})") from None


def max_threads() -> int:
    """The most interpreter threads (or worker processes) a command accepts: 4 per core, at least 8."""
    return max(8, 4 * (os.cpu_count() or 1))


def check_threads(value: int | None, option: str) -> int | None:
    """``value`` when it is None or between 1 and :func:`max_threads`; else EdgeDetectError naming ``option``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_threads():
        raise EdgeDetectError(f"{option} {value!r}: use 1 to {max_threads()} (this machine has "
                              f"{os.cpu_count() or 1} cores; more threads only cost memory)")
    return value


def check_io_types(path, inp: dict, out: dict) -> None:
    """Raise EdgeDetectError unless the input takes float32 or quantized (u)int8 pixels and the output is a float
    or a quantized integer score; an unquantized integer output is a count or a class index, not p_fake."""
    import numpy as np

    def scale(detail: dict) -> float:
        s = detail.get("quantization", (0.0, 0))[0]
        if not s:
            s = next(iter(detail.get("quantization_parameters", {}).get("scales", [])), 0.0)
        return float(s)

    for role, detail in (("input", inp), ("output", out)):
        dtype = np.dtype(detail["dtype"])
        if dtype == np.float32 or (role == "output" and dtype == np.float16):
            continue
        if dtype in (np.uint8, np.int8):
            s = scale(detail)
            if not (math.isfinite(s) and s > 0):
                raise EdgeDetectError(f"{path}: the {role} tensor is {dtype.name} without quantization parameters; "
                                      + ("an image input of integers needs a scale and zero point"
                                         if role == "input" else "its values are not a probability (p_fake)"))
            continue
        raise EdgeDetectError(f"{path}: the {role} tensor is {dtype.name}; an edgedetect detector takes float32, "
                              "uint8 or int8 pixels and gives a float or quantized score")
