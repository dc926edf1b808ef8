"""Find a TFLite interpreter without importing TensorFlow unless nothing else is installed.

Lookup order: ``ai_edge_litert.interpreter`` (LiteRT, the maintained package), ``tflite_runtime.interpreter``
(the last release, 2.14, needs numpy < 2 and is kept only as a fallback for old Python/numpy), then
``tensorflow.lite`` (full TensorFlow).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from functools import lru_cache
from importlib import metadata

from edgedetect.errors import EdgeDetectError

CANDIDATES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow"),
)


@lru_cache(maxsize=1)
def find_interpreter() -> tuple[type, str, str]:
    """``(Interpreter class, distribution name, version)`` of the first interpreter that imports.

    Raises:
        EdgeDetectError: none of the candidates is installed.
    """
    for module_name, dist in CANDIDATES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "unknown"
        if dist == "tensorflow" and version == "unknown":
            try:
                version = metadata.version("tensorflow-cpu")
            except metadata.PackageNotFoundError:
                pass
        return module.Interpreter, dist, version
    raise EdgeDetectError(
        "no TFLite interpreter found; install one: pip install ai-edge-litert "
        "(or tflite-runtime on Python <= 3.11 with numpy < 2)"
    )


@contextlib.contextmanager
def _native_stderr_hidden():
    """Hide what native code writes on file descriptor 2 while the block runs; show it after all if the block raises.

    LiteRT's C++ logs "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on the first ``allocate_tensors()``
    of a process, straight to fd 2, where ``contextlib.redirect_stderr`` cannot catch it.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no fd 2 (None, closed or replaced stderr): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())  # the native side of the failure
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load_interpreter(model: str | bytes, num_threads: int):
    """An interpreter for ``model`` (a path, or the file's bytes, which must outlive it) with its tensors allocated,
    created without LiteRT's INFO line on stderr.

    Raises:
        EdgeDetectError: no interpreter is installed.
        ValueError, RuntimeError: the interpreter rejects the file (what it printed natively is shown).
    """
    Interpreter, _, _ = find_interpreter()
    with _native_stderr_hidden():
        if isinstance(model, (bytes, bytearray)):
            interp = Interpreter(model_content=model, num_threads=num_threads)
        else:
            interp = Interpreter(model_path=model, num_threads=num_threads)
        interp.allocate_tensors()
    return interp
