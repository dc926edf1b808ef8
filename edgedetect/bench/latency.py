"""Batch-1 latency of a model: warm-up, then many ``invoke()`` calls timed with ``time.perf_counter``."""

from __future__ import annotations

import os
import time

import numpy as np

from edgedetect.interpreter import load_interpreter


def measure_latency(model: str | os.PathLike, threads: int, runs: int, warmup: int) -> np.ndarray:
    """Milliseconds of ``runs`` batch-1 ``invoke()`` calls after ``warmup`` untimed ones (input: random pixels)."""
    interp = load_interpreter(str(model), threads)
    detail = interp.get_input_details()[0]
    shape = [1, *(int(d) for d in detail["shape"][1:])]
    if int(detail["shape"][0]) != 1:
        interp.resize_tensor_input(detail["index"], shape)
    interp.allocate_tensors()
    dtype = np.dtype(detail["dtype"])
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        x = rng.uniform(0, 255, shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    interp.set_tensor(detail["index"], x)
    for _ in range(warmup):
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        interp.invoke()
        times[i] = time.perf_counter() - t
    return times * 1e3
