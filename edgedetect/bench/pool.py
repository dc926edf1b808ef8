"""The throughput pass: worker processes (spawned), each with its own interpreter, classifying chunks on demand."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
import warnings
from collections import deque

import numpy as np

from edgedetect.bench.images import ImageSet
from edgedetect.bench.perturb import Perturbation, load_perturbed
from edgedetect.errors import EdgeDetectError, EdgeDetectWarning, ImageError
from edgedetect.preprocess import open_image
from edgedetect.runtime import DEFAULT_BATCH, Classifier


def _classify_chunk(clf: Classifier | None, items: list, perturbation: Perturbation | None,
                    batch: np.ndarray) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """p_fake per item (NaN where it failed) and ``(position, problem)`` per failure; fills ``batch`` in place.

    Without ``clf`` nothing is invoked (p_fake 0): the floor, what reading, decoding and batching alone cost.
    """
    size, n_batch = batch.shape[1], len(batch)
    out = np.full(len(items), np.nan)
    errors: list[tuple[int, str]] = []
    filled: list[int] = []
    if clf is not None and clf.mode == "crops":  # a native-resolution model: its own crops, one invoke per image
        for j, item in enumerate(items):
            try:
                img = open_image(item)
                out[j] = clf.p_fake(perturbation.apply(img) if perturbation is not None else img)
            except ImageError as e:
                errors.append((j, e.problem))
        return out, errors
    for j, item in enumerate(items):
        try:
            batch[len(filled)] = load_perturbed(item, size, perturbation)
        except ImageError as e:
            errors.append((j, e.problem))
            continue
        filled.append(j)
        if len(filled) == n_batch:
            out[filled] = clf.invoke(batch) if clf is not None else 0.0
            filled = []
    if filled:  # pad the last batch: re-allocating the interpreter for a smaller one costs more than the zeros
        k = len(filled)
        batch[k:] = 0
        out[filled] = clf.invoke(batch)[:k] if clf is not None else 0.0
    return out, errors


class _Worker:
    """Keeps one Classifier per model; runs chunks. The same code runs in-process and in worker processes."""

    def __init__(self, threads: int, batch_size: int):
        self.threads, self.batch_size = threads, batch_size
        self.models: dict[str, tuple[Classifier, np.ndarray]] = {}

    def load(self, model: str | int) -> None:
        """A model path, or an input size: the floor at that size (decode and batch, no interpreter)."""
        if isinstance(model, int):
            if model not in self.models:
                self.models[model] = (None, np.zeros((self.batch_size, model, model, 3), np.uint8))
            return
        if model not in self.models:
            with warnings.catch_warnings():  # run_bench already showed its warnings (no metadata)
                warnings.simplefilter("ignore", EdgeDetectWarning)
                clf = Classifier(model, threads=self.threads, batch_size=self.batch_size)
            batch = np.zeros((self.batch_size, clf.input_size, clf.input_size, 3), np.uint8)
            clf.invoke(batch)  # allocate at the batch size and warm up, outside the timed pass
            self.models[model] = (clf, batch)

    def run(self, model: str | int, items: list, perturbation: Perturbation | None):
        self.load(model)
        clf, batch = self.models[model]
        return _classify_chunk(clf, items, perturbation, batch)


def _worker_main(conn, threads: int, batch_size: int) -> None:
    """Entry point of a worker process: answer ("load", model) and ("run", model, items, perturbation) messages."""
    worker = _Worker(threads, batch_size)
    try:
        while (msg := conn.recv()) is not None:
            try:
                if msg[0] == "load":
                    worker.load(msg[1])
                    conn.send(("ok", None))
                else:
                    conn.send(("ok", worker.run(*msg[1:])))
            except EdgeDetectError as e:
                conn.send(("error", str(e)))
            except Exception:  # a bug: hand the traceback to the parent, which raises it
                conn.send(("crash", traceback.format_exc()))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass  # the parent is going away; it reports the interruption


class WorkerPool:
    """``workers`` processes (spawned, so safe on every platform) classifying chunks of an :class:`ImageSet`.

    With ``workers=1`` everything runs in the calling process.
    """

    def __init__(self, workers: int, threads: int = 1, batch_size: int = DEFAULT_BATCH, chunk: int | None = None):
        self.workers, self.threads, self.batch_size = workers, threads, batch_size
        # Small chunks handed out on demand keep every core busy to the end, even when one is slowed by other work.
        self.chunk = chunk or 2 * batch_size
        self._local = _Worker(threads, batch_size) if workers == 1 else None
        self._conns, self._procs = [], []
        if self._local is None:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            # Workers start with Ctrl-C ignored (inherited through exec): the parent reports the interruption and
            # stops them, instead of every worker printing a KeyboardInterrupt traceback from wherever it was.
            ignore = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignore else None
            try:
                for _ in range(workers):
                    parent, child = ctx.Pipe()
                    proc = ctx.Process(target=_worker_main, args=(child, threads, batch_size), daemon=True)
                    proc.start()
                    child.close()
                    self._conns.append(parent)
                    self._procs.append(proc)
            finally:
                if ignore:
                    signal.signal(signal.SIGINT, previous)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:  # interrupted or failed: the chunks the workers still hold are of no use
            for proc in self._procs:
                proc.terminate()
        self.close()

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    @staticmethod
    def _answer(conn):
        try:
            status, payload = conn.recv()
        except (EOFError, OSError):
            raise RuntimeError("a bench worker process died (out of memory?)") from None
        if status == "error":
            raise EdgeDetectError(payload)
        if status == "crash":
            raise RuntimeError(f"a bench worker failed:\n{payload}")
        return payload

    def run(self, model: str | os.PathLike | int, images: ImageSet, perturbation: Perturbation | None = None):
        """Classify every image with ``model`` (an int: read, decode and batch them at that size, no model).

        Returns:
            ``(p_fake, errors, seconds)``: p_fake per image (NaN where it failed), ``{index: problem}``, and the
            wall-clock seconds of the pass (model loading excluded).
        """
        model = model if isinstance(model, int) else str(model)
        n = len(images)
        p = np.full(n, np.nan)
        errors: dict[int, str] = {}
        chunks = deque(range(0, n, self.chunk))
        if self._local is not None:
            self._local.load(model)
            t = time.perf_counter()
            for start in chunks:
                out, errs = self._local.run(model, images.items[start : start + self.chunk], perturbation)
                p[start : start + len(out)] = out
                errors.update((start + j, msg) for j, msg in errs)
            return p, errors, time.perf_counter() - t
        from multiprocessing.connection import wait

        for conn in self._conns:
            conn.send(("load", model))
        for conn in self._conns:
            self._answer(conn)
        in_flight: dict = {conn: deque() for conn in self._conns}

        def hand_out(conn) -> None:
            if chunks:
                start = chunks.popleft()
                conn.send(("run", model, images.items[start : start + self.chunk], perturbation))
                in_flight[conn].append(start)

        t = time.perf_counter()
        for conn in self._conns:  # two chunks each, so a worker never waits for the next one
            hand_out(conn)
            hand_out(conn)
        while any(in_flight.values()):
            for conn in wait([c for c, q in in_flight.items() if q]):
                try:
                    out, errs = self._answer(conn)
                except EdgeDetectError:  # the model failed (e.g. its output is no probability): collect the
                    chunks.clear()  # answers still on their way, so the next model starts on clean pipes
                    in_flight[conn].popleft()
                    for c, queue in in_flight.items():
                        while queue:
                            queue.popleft()
                            try:
                                self._answer(c)
                            except EdgeDetectError:
                                pass
                    raise
                start = in_flight[conn].popleft()
                p[start : start + len(out)] = out
                errors.update((start + j, msg) for j, msg in errs)
                hand_out(conn)
        return p, errors, time.perf_counter() - t
