"""Find a TFLite interpreter without importing TensorFlow unless nothing else is installed.

Lookup order: ``ai_edge_litert.interpreter`` (LiteRT, the maintained package), ``tflite_runtime.interpreter``
(the last release, 2.14, needs numpy < 2 and is kept only as a fallback for old Python/numpy), then
``tensorflow.lite`` (full TensorFlow).
"""

from __future__ import annotations

import importlib
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
