"""Benchmark .tflite detectors on the interpreter alone: size, latency, throughput, accuracy, drift, robustness.

``run_bench`` is what ``edgedetect bench`` calls; it is just as usable from Python::

    from edgedetect.bench import BenchConfig, run_bench

    doc = run_bench(BenchConfig(models=["models/x_int8.tflite"], data="cifake-test/"))

(The worker processes are spawned, so a script that calls it needs the ``if __name__ == "__main__":`` guard.)

Method, per model:

* **latency**: one interpreter with ``threads`` threads, batch 1, ``warmup`` untimed invokes, then ``runs``
  invokes each timed with ``time.perf_counter``; median and p90 in ms. Only ``invoke()`` is timed.
* **throughput** (with data): ``workers`` processes (default: one per core), each with its own single-threaded
  interpreter at batch ``batch_size``, read, decode (:func:`edgedetect.preprocess.load_image`, the one
  preprocessing) and classify chunks of the data handed out on demand. Timed from handing out the first chunk
  to receiving the last result; process start-up and model loading are excluded (they happen once). For an
  archive, the time to read it into memory (pro-rated with ``limit``) is added to every model's time.
* **floor** (with data): the throughput pass without ``invoke()`` (same workers, chunks, reading, decoding and
  batching), right before and right after each model's pass; ``floor_ratio`` = the model's img/s over the faster
  of the two, so a host load that comes and goes moves both sides of the ratio alike. ``macs_per_image`` comes
  from the graph (:mod:`edgedetect.macs`); ``host.cpu_flags`` names the instructions that decide int8 speed.
* **recommendation**: the highest throughput (latency without data) among the files within ``tolerance``
  accuracy of the most accurate one.
* **accuracy** from the same pass: accuracy, precision, recall, F1 (FAKE positive) at the model's threshold, and
  ROC-AUC, over the images whose class a folder name gives (:func:`edgedetect.data.classify`).
* **drift** vs a reference model (default: the fp32 model of the same family, ``<family>_fp32.tflite`` beside
  it): accuracy difference, label agreement and the max and mean of ``|p_fake - p_fake_reference|``.
* **perturbations** (``jpeg:Q``, ``resize:F``, ``blur:R``): the accuracy pass again with each perturbation
  applied in memory to the decoded image before the usual crop and resize.
"""

from __future__ import annotations

import csv
import io
import math
import os
import platform
import signal
import threading
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
from PIL import Image, ImageFilter

from edgedetect import __version__
from edgedetect.data import Scan, archive_kind, classify, default_memory_budget, list_folder
from edgedetect.errors import EdgeDetectError, EdgeDetectWarning, ImageError, printable
from edgedetect.interpreter import find_interpreter, load_interpreter
from edgedetect.macs import model_macs
from edgedetect.metrics import binary_metrics
from edgedetect.model_check import check_threads
from edgedetect.preprocess import RESAMPLE, open_image, to_array
from edgedetect.runtime import DEFAULT_BATCH, Classifier
from edgedetect.sampling import limit_sample

PRECISION_SUFFIXES = ("_fp32", "_fp16", "_dynamic", "_int8")
CONTRACT_KEYS = ("model", "precision", "size_bytes", "latency_ms_p50", "latency_ms_p90", "throughput_ips",
                 "accuracy", "precision_fake", "recall_fake", "f1", "roc_auc", "delta_accuracy", "agreement",
                 "max_abs_dp")
PERTURB_HELP = ("jpeg:Q (re-encode at JPEG quality Q, 1-100), resize:F (downscale by 0 < F < 1), "
                "blur:R (Gaussian radius R > 0)")
Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------- perturbations


@dataclass(frozen=True)
class Perturbation:
    """One in-memory change applied to a decoded image before the usual crop and resize."""

    kind: str  # jpeg, resize or blur
    value: float

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value:g}"

    def apply(self, img: Image.Image) -> Image.Image:
        """The perturbed RGB image (same mode; ``resize`` makes it smaller)."""
        if self.kind == "jpeg":
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=int(self.value))
            return open_image(buf.getvalue())
        if self.kind == "resize":
            w, h = img.size
            return img.resize((max(1, round(w * self.value)), max(1, round(h * self.value))), RESAMPLE)
        return img.filter(ImageFilter.GaussianBlur(self.value))


def parse_perturbations(spec: str | None) -> list[Perturbation]:
    """``"jpeg:50,resize:0.5,blur:1.0"`` -> perturbations, in order, without repeats.

    Raises:
        EdgeDetectError: an unknown kind or a value out of range, naming the valid forms.
    """
    if spec is None:
        return []
    found: list[Perturbation] = []
    for part in (p.strip() for p in spec.split(",")):
        kind, sep, raw = part.partition(":")
        kind = kind.strip().lower()
        try:
            value = float(raw) if sep else math.nan
        except ValueError:
            value = math.nan
        ok = {
            "jpeg": value == int(value) and 1 <= value <= 100 if math.isfinite(value) else False,
            "resize": 0 < value < 1,
            "blur": 0 < value <= 100,
        }.get(kind, False)
        if not ok:
            raise EdgeDetectError(f"--perturb {spec!r}: cannot use {part!r}; valid: {PERTURB_HELP}, "
                                  "comma-separated, e.g. --perturb jpeg:50,resize:0.5,blur:1.0")
        p = Perturbation(kind, value)
        if p not in found:
            found.append(p)
    return found


def load_perturbed(source: Union[str, os.PathLike, bytes], size: int,
                   perturbation: Perturbation | None = None) -> np.ndarray:
    """:func:`edgedetect.preprocess.load_image` with ``perturbation`` applied between decoding and resizing."""
    img = open_image(source)
    if perturbation is not None:
        img = perturbation.apply(img)
    return to_array(img, size)


# ------------------------------------------------------------------------------------------------ the models


def shipped_models() -> list[Path]:
    """The .tflite files installed in the ``edgedetect.models`` package (the repository's ``models/``)."""
    root = Path(str(resources.files("edgedetect.models")))
    return sorted(root.glob("*.tflite"))


def _precision(model: Path) -> str:
    from edgedetect.metadata import read_metadata

    meta = read_metadata(model)
    if meta is not None and meta.precision != "unknown":
        return meta.precision
    return next((s[1:] for s in PRECISION_SUFFIXES if model.stem.endswith(s)), "unknown")


def family_reference(model: str | os.PathLike) -> Path | None:
    """The fp32 model of ``model``'s family beside it, or None.

    ``x_int8.tflite`` -> ``x_fp32.tflite`` (or ``x.tflite`` when its metadata says fp32); an fp32 model is its
    own reference.
    """
    model = Path(model)
    if _precision(model) == "fp32":
        return model
    stem = model.stem
    base = next((stem[: -len(s)] for s in PRECISION_SUFFIXES if stem.endswith(s)), stem)
    candidate = model.with_name(f"{base}_fp32.tflite")
    if candidate.is_file():
        return candidate
    plain = model.with_name(f"{base}.tflite")
    if plain != model and plain.is_file() and _precision(plain) == "fp32":
        return plain
    return None


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


# ------------------------------------------------------------------------------------------------- the data


@dataclass
class ImageSet:
    """The images of ``--data``: relative paths, what a worker reads (a path, or the bytes of an archive member),
    labels (1 FAKE, 0 REAL, -1 no class folder) and the seconds spent reading an archive into memory."""

    source: str
    relpaths: list[str]
    items: list
    labels: np.ndarray
    read_s: float = 0.0
    n_found: int = 0
    unreadable: list = field(default_factory=list)  # (relpath, problem): archive members and folders not read

    def __len__(self) -> int:
        return len(self.relpaths)


def load_image_set(data: str | os.PathLike, limit: int | None = None) -> ImageSet:
    """List the images of a folder (recursively) or read those of an archive (.tar.gz/.zip) into memory.

    With ``limit``, ``limit`` images are kept (:func:`edgedetect.sampling.limit_sample`: seeded, each class
    folder keeping its share); an archive is still read whole, and its read time is pro-rated.

    Raises:
        EdgeDetectError: missing path, unsupported file, or no image files in it.
    """
    path = Path(data)
    kind = archive_kind(path)
    t = time.perf_counter()
    if kind == "folder":
        entries = list_folder(path)
        relpaths, items = [e.relpath for e in entries], [str(e.path) for e in entries]
        unreadable = list(entries.skipped)
        read_s = 0.0  # workers read the files themselves, inside the timed pass
    else:
        scanned, held, budget = [], 0, default_memory_budget()
        for row in Scan(path):  # the members are held in memory for the workers: bounded like decoded arrays
            held += len(row[1] or b"")
            if held > budget:
                raise EdgeDetectError(f"{path}: its images take more than the memory budget of {budget / 2**30:.1f} "
                                      "GiB; extract the archive and pass the folder, or raise EDGEDETECT_MEMORY_BUDGET")
            scanned.append(row)
        scanned.sort(key=lambda row: row[0])
        relpaths, items = [r for r, data, _ in scanned if data is not None], [d for _, d, _ in scanned if d is not None]
        unreadable = [(r, problem) for r, data, problem in scanned if data is None]
        read_s = time.perf_counter() - t
    n_found = len(relpaths)
    if not n_found and not unreadable:
        raise EdgeDetectError(f"{path}: no image files in it; point --data at a folder or archive of images "
                              "(REAL/FAKE class folders give accuracy figures)")
    labels = np.array([-1 if (lab := classify(r)[1]) is None else lab for r in relpaths], np.int8)
    if limit is not None and limit < n_found:
        keep = limit_sample(n_found, limit, labels)
        relpaths, items, labels = [relpaths[i] for i in keep], [items[i] for i in keep], labels[keep]
        read_s *= limit / n_found  # the share of the archive's read time that the kept images cost
    return ImageSet(str(path), relpaths, items, labels, read_s, n_found, unreadable)


# ---------------------------------------------------------------------------------------- the worker pool


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
                arrays, _ = clf.inputs_for(perturbation.apply(img) if perturbation is not None else img)
            except ImageError as e:
                errors.append((j, e.problem))
                continue
            out[j] = clf.combine(clf.predict(arrays))
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


# ------------------------------------------------------------------------------------------------- host info


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# What decides whether int8 pays: 8-bit dot-product instructions (x86 VNNI, ARM dot product). Names as in
# /proc/cpuinfo ("flags" on x86, "Features" on ARM, where asimd is NEON and asimddp its dot product).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def cpu_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The flags of :data:`CPU_FLAGS` this CPU has, in that order; None where they cannot be read (not Linux).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (default: read it).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            have = set(value.split())
            return [f for f in CPU_FLAGS if f in have]
    return None


def has_int8_dot(flags: list[str] | None) -> bool | None:
    """Whether ``flags`` include an 8-bit dot-product instruction (None: unknown)."""
    return None if flags is None else any(f in flags for f in INT8_DOT_FLAGS)


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def host_info(threads: int | None = None, workers: int | None = None, threads_per_worker: int | None = None) -> dict:
    """What the figures depend on: CPU, cores, OS, versions, load, and the threads and workers used."""
    _, package, version = find_interpreter()
    import PIL

    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cpu_flags": flags,
        "int8_dot_product": has_int8_dot(flags),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "os": platform.platform(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "interpreter": f"{package} {version}",
        "edgedetect": __version__,
        "threads": threads,
        "workers": workers,
        "threads_per_worker": threads_per_worker,
        "load_average": load,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# -------------------------------------------------------------------------------------------------- the bench


@dataclass
class BenchConfig:
    """What ``edgedetect bench`` measures.

    Attributes:
        models: .tflite files (empty: every shipped model).
        data: folder or archive of images; without it only size and latency are measured.
        reference: model every other is compared with (default: each one's fp32 sibling).
        threads: interpreter threads for the latency measurement (default: all usable cores).
        runs: timed batch-1 invokes per model.
        warmup: untimed invokes before them.
        limit: use at most this many images of ``data`` (:func:`edgedetect.sampling.limit_sample`).
        perturb: perturbation spec, e.g. ``jpeg:50,resize:0.5,blur:1.0``.
        workers: processes for the throughput pass (default: one per usable core).
        batch_size: images per invoke in the throughput pass.
        tolerance: accuracy (a fraction: 0.003 = 0.3 points) a recommended file may give up against the most
            accurate one for speed.
    """

    models: list[str] = field(default_factory=list)
    data: Optional[str] = None
    reference: Optional[str] = None
    threads: Optional[int] = None
    runs: int = 100
    warmup: int = 10
    limit: Optional[int] = None
    perturb: Optional[str] = None
    workers: Optional[int] = None
    batch_size: int = DEFAULT_BATCH
    tolerance: float = 0.003


def _check_config(cfg: BenchConfig) -> None:
    for name, value, low in (("--runs", cfg.runs, 1), ("--warmup", cfg.warmup, 0), ("--limit", cfg.limit, 1),
                             ("--threads", cfg.threads, 1), ("--workers", cfg.workers, 1),
                             ("--batch-size", cfg.batch_size, 1)):
        if value is not None and value < low:
            raise EdgeDetectError(f"{name} must be at least {low}; received {value}")
    check_threads(cfg.threads, "--threads")
    check_threads(cfg.workers, "--workers")
    if not 0 <= cfg.tolerance <= 1:
        raise EdgeDetectError(f"--tolerance must be 0 to 100 points; received {100 * cfg.tolerance:g}")
    if cfg.data is None:
        for name, value in (("--perturb", cfg.perturb), ("--reference", cfg.reference), ("--limit", cfg.limit)):
            if value is not None:
                raise EdgeDetectError(f"{name} needs --data: accuracy, drift and perturbations are measured over "
                                      "images; add --data FOLDER_OR_ARCHIVE")


def _resolve_models(models: list[str]) -> list[Path]:
    if not models:
        found = shipped_models()
        if not found:
            where = Path(str(resources.files("edgedetect.models")))
            raise EdgeDetectError(f"no models given and no shipped models in {where}; "
                                  "pass .tflite files, e.g. edgedetect bench path/to/model_int8.tflite")
        return found
    out: list[Path] = []
    for m in models:
        p = Path(m)
        if p.resolve() not in {q.resolve() for q in out}:
            out.append(p)
    return out


def _metrics(p: np.ndarray, labels: np.ndarray, threshold: float) -> dict | None:
    keep = np.isfinite(p) & (labels >= 0)
    return binary_metrics(labels[keep], p[keep], threshold) if keep.any() else None


def _drift(p: np.ndarray, thr: float, p_ref: np.ndarray, thr_ref: float, labels: np.ndarray) -> dict:
    both = np.isfinite(p) & np.isfinite(p_ref)
    if not both.any():
        return {"delta_accuracy": None, "agreement": None, "max_abs_dp": None, "mean_abs_dp": None}
    a, b = p[both] >= thr, p_ref[both] >= thr_ref
    dp = np.abs(p[both] - p_ref[both])
    lab = labels[both]
    known = lab >= 0
    delta = float(np.mean(a[known] == lab[known]) - np.mean(b[known] == lab[known])) if known.any() else None
    return {"delta_accuracy": delta, "agreement": float(np.mean(a == b)), "max_abs_dp": float(dp.max()),
            "mean_abs_dp": float(dp.mean())}


def run_bench(cfg: BenchConfig, log: Log | None = None) -> dict:
    """Benchmark ``cfg.models``; returns the JSON document ``edgedetect bench --json`` prints.

    Document: ``data``, ``n_images`` (images classified), ``reference``, ``host``, ``method``, ``rows`` (one
    per model with the keys of :data:`CONTRACT_KEYS`, ``None`` where not measured, plus ``reference``,
    ``mean_abs_dp``, ``perturbations`` {name: {accuracy, roc_auc, agreement}} and more), ``perturbations``
    (the names) and ``errors`` (``[{"path", "error"}]`` for files that could not be read; the run goes on).

    Raises:
        EdgeDetectError: a bad option, model or data path.
    """
    log = log or (lambda _msg: None)
    _check_config(cfg)
    perturbations = parse_perturbations(cfg.perturb)
    models = _resolve_models(cfg.models)
    classifiers: dict[Path, Classifier] = {}

    def classifier(path: Path) -> Classifier:  # validates the file and reads its metadata, once
        key = next((k for k in classifiers if k.resolve() == path.resolve()), path)
        if key not in classifiers:
            classifiers[key] = Classifier(key, threads=1, batch_size=1)
        return classifiers[key]

    model_errors: list[dict] = []  # a bad model is reported and left out; the others are measured

    def refuse(model: Path, e: EdgeDetectError) -> None:
        model_errors.append({"model": str(model), "error": str(e)})

    for m in list(models):
        try:
            classifier(m)
        except EdgeDetectError as e:
            if len(models) == 1:
                raise
            refuse(m, e)
            models.remove(m)
    if not models:
        more = f" (and {len(model_errors) - 1} more models refused)" if len(model_errors) > 1 else ""
        raise EdgeDetectError(model_errors[0]["error"] + more)
    if cfg.reference is not None:
        classifier(Path(cfg.reference))
    cores = usable_cores()
    threads = cfg.threads or cores
    workers = cfg.workers or cores
    images = load_image_set(cfg.data, cfg.limit) if cfg.data is not None else None
    if images is not None:
        log(f"data: {images.source}: {len(images):,} images"
            + (f" (of {images.n_found:,}, --limit)" if len(images) < images.n_found else "")
            + (f", read in {images.read_s:.2f} s" if images.read_s else ""))

    rows: list[dict] = []
    for model in list(models):  # latency first, while no worker process exists to compete for the cores
        clf = classifier(model)
        try:
            lat = measure_latency(model, threads, cfg.runs, cfg.warmup)
        except (RuntimeError, ValueError) as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            refuse(model, EdgeDetectError(f"{model}: cannot be run ({detail})"))
            models.remove(model)
            continue
        row = {k: None for k in CONTRACT_KEYS}
        precision = clf.metadata.precision if clf.metadata.precision != "unknown" else _precision(model)
        row.update(model=str(model), precision=precision, size_bytes=model.stat().st_size,
                   latency_ms_p50=float(np.median(lat)), latency_ms_p90=float(np.percentile(lat, 90)),
                   input_size=clf.input_size, io=clf.input_dtype.name, threshold=clf.threshold,
                   arch=clf.metadata.arch, reference=None, mean_abs_dp=None, n_images=None,
                   throughput_seconds=None, macs_per_image=model_macs(model), floor_ips=None, floor_ratio=None,
                   perturbations={})
        rows.append(row)
        if images is None:
            log(_row_line(row))

    preds: dict[Path, np.ndarray] = {}
    errors: dict[int, str] = {}
    floors: dict[int, list[float]] = {}
    if images is not None:
        with WorkerPool(workers, 1, cfg.batch_size) as pool:

            def measure_floor(size: int) -> float:  # the same pool, chunks and decoding as the models, no invoke()
                p, _, secs = pool.run(size, images)
                n_ok = int(np.isfinite(p).sum())
                floors.setdefault(size, []).append(n_ok / (secs + images.read_s) if n_ok else 0.0)
                return floors[size][-1]

            # The floor is measured right before and right after each model's pass (one pass between two models
            # serves both), so a load that comes and goes on the host moves both sides of the ratio alike; the
            # faster of the two counts, so the ratio errs low.
            last_floor: tuple[int, float] | None = None
            for model, row in list(zip(models, rows)):
                size = row["input_size"]
                before = last_floor[1] if last_floor and last_floor[0] == size else measure_floor(size)
                clf = classifier(model)
                try:
                    p, errs, secs = pool.run(model, images)
                except EdgeDetectError as e:  # e.g. an output that is not a probability
                    refuse(model, e)
                    models.remove(model)
                    rows.remove(row)
                    continue
                errors.update(errs)
                preds[model] = p
                n_ok = int(np.isfinite(p).sum())
                row.update(n_images=n_ok, throughput_seconds=secs + images.read_s,
                           throughput_ips=n_ok / (secs + images.read_s) if n_ok else None)
                after = measure_floor(size)
                last_floor = None if perturbations else (size, after)
                row["floor_ips"] = max(before, after)
                if row["throughput_ips"] is not None and row["floor_ips"]:
                    row["floor_ratio"] = row["throughput_ips"] / row["floor_ips"]
                m = _metrics(p, images.labels, clf.threshold)
                if m is not None:
                    row.update(accuracy=m["accuracy"], precision_fake=m["precision"], recall_fake=m["recall"],
                               f1=m["f1"], roc_auc=m["roc_auc"])
                for pert in perturbations:
                    pp, errs, _ = pool.run(model, images, pert)
                    errors.update(errs)
                    pm = _metrics(pp, images.labels, clf.threshold)
                    both = np.isfinite(pp) & np.isfinite(p)
                    row["perturbations"][pert.name] = {
                        "accuracy": pm["accuracy"] if pm else None,
                        "roc_auc": pm["roc_auc"] if pm else None,
                        "agreement": float(np.mean((pp[both] >= clf.threshold) == (p[both] >= clf.threshold)))
                        if both.any() else None,
                    }
                log(_row_line(row))

            if not rows:
                raise EdgeDetectError(model_errors[0]["error"])
            for model, row in zip(models, rows):
                ref = Path(cfg.reference) if cfg.reference is not None else family_reference(model)
                if ref is None:
                    continue
                ref = next((m for m in preds if m.resolve() == ref.resolve()), ref)
                if ref not in preds:
                    log(f"reference {ref}: classifying the data")
                    preds[ref], errs, _ = pool.run(ref, images)
                    errors.update(errs)
                row["reference"] = str(ref)
                row.update(_drift(preds[model], classifier(model).threshold, preds[ref], classifier(ref).threshold,
                                  images.labels))

    n_images = int(np.isfinite(next(iter(preds.values()))).sum()) if preds else 0
    return {
        "data": images.source if images is not None else None,
        "n_images": n_images,
        "n_files": len(images) if images is not None else 0,
        "n_labelled": int((images.labels >= 0).sum()) if images is not None else 0,
        "reference": cfg.reference,
        "host": host_info(threads, workers if images is not None else None, 1 if images is not None else None),
        "method": {
            "latency": f"batch 1, {threads} interpreter thread(s), {cfg.warmup} warm-up then {cfg.runs} timed "
                       "invoke() calls (time.perf_counter); median and p90",
            "throughput": f"{workers} worker process(es) x 1 interpreter thread, batch {cfg.batch_size}: read + "
                          "decode + preprocess + invoke over the data; start-up and model loading excluded"
                          + ("; archive read time included" if images is not None and images.read_s else ""),
            "floor": "the throughput pass without invoke() (read + decode + preprocess + batch, same workers and "
                     "chunks), right before and right after each model's pass; a row's floor_ips is the faster "
                     "of its two and floor_ratio = throughput_ips / floor_ips; floor.throughput_ips is the "
                     "fastest pass of the run",
            "recommendation": f"the highest throughput (batch-1 latency without data) among the files within "
                              f"{100 * cfg.tolerance:g} accuracy points of the most accurate one",
            "runs": cfg.runs, "warmup": cfg.warmup, "batch_size": cfg.batch_size, "limit": cfg.limit,
        },
        "perturbations": [p.name for p in perturbations],
        "floor": [{"input_size": k, "throughput_ips": max(v), "passes_ips": v} for k, v in sorted(floors.items())],
        "recommendation": recommend(rows, cfg.tolerance),
        "rows": rows,
        "model_errors": model_errors,
        "errors": [{"path": images.relpaths[i], "error": msg} for i, msg in sorted(errors.items())]
        + [{"path": path, "error": msg} for path, msg in (images.unreadable if images is not None else [])],
    }


def recommend(rows: list[dict], tolerance: float) -> dict | None:
    """The file to use on this host: the fastest within ``tolerance`` of the most accurate (None without rows).

    Speed is end-to-end throughput where it was measured, else batch-1 latency (and then accuracy is unknown,
    so every file is a candidate).
    """
    if not rows:
        return None
    with_acc = [r for r in rows if r["accuracy"] is not None and r["throughput_ips"] is not None]
    if with_acc:
        best = max(with_acc, key=lambda r: r["accuracy"])
        pool = [r for r in with_acc if r["accuracy"] >= best["accuracy"] - tolerance - 1e-12]
        pick = max(pool, key=lambda r: r["throughput_ips"])
        by = "throughput"
    else:
        best, pool = None, rows
        pick = min(pool, key=lambda r: r["latency_ms_p50"])
        by = "latency"
    return {"model": pick["model"], "by": by, "tolerance": tolerance, "accuracy": pick["accuracy"],
            "throughput_ips": pick["throughput_ips"], "floor_ratio": pick["floor_ratio"],
            "latency_ms_p50": pick["latency_ms_p50"],
            "most_accurate": best["model"] if best else None, "best_accuracy": best["accuracy"] if best else None}


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def _row_line(row: dict) -> str:
    parts = [f"{Path(row['model']).name}: {row['latency_ms_p50']:.3f} ms/img (batch 1)"]
    if row["throughput_ips"] is not None:
        parts.append(f"{row['throughput_ips']:,.0f} img/s")
        if row["floor_ratio"] is not None:
            parts.append(f"{row['floor_ratio']:.2f} x floor ({row['floor_ips']:,.0f} img/s)")
    if row["accuracy"] is not None:
        parts.append(f"accuracy {row['accuracy']:.4f}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------------- output


def render(doc: dict, console) -> None:
    """Print ``doc`` as tables (Ultralytics-style) on a rich ``console``."""
    from rich.markup import escape
    from rich.table import Table

    host = doc["host"]
    table = Table(title=f"edgedetect bench · {escape(doc['data'] or 'no data (size and latency only)')}"
                  + (f" · {doc['n_images']:,} images" if doc["data"] else ""), title_justify="left")
    columns = ("Model", "Prec.", "MB", "MMAC", "Acc", "F1", "AUC", "ms/img p50 (p90)", "img/s", "× floor", "ΔAcc pt",
               "Agree", "max|Δp|")
    for col in columns:
        table.add_column(col, justify="left" if col in ("Model", "Prec.") else "right", no_wrap=True)
    for r in doc["rows"]:
        delta = None if r["delta_accuracy"] is None else 100 * r["delta_accuracy"]
        macs = None if r["macs_per_image"] is None else r["macs_per_image"] / 1e6
        table.add_row(escape(Path(r["model"]).stem), r["precision"], f"{r['size_bytes'] / 1e6:.2f}", _fmt(macs, ".2f"),
                      _fmt(r["accuracy"], ".4f"), _fmt(r["f1"], ".4f"), _fmt(r["roc_auc"], ".4f"),
                      f"{r['latency_ms_p50']:.3f} ({r['latency_ms_p90']:.3f})", _fmt(r["throughput_ips"], ",.0f"),
                      _fmt(r["floor_ratio"], ".2f"), _fmt(delta, "+.2f"), _fmt(r["agreement"], ".4f"),
                      _fmt(r["max_abs_dp"], ".4f"))
    console.print(table)
    if doc["perturbations"]:
        pt = Table(title="Accuracy under perturbation (change vs clean, points)", title_justify="left")
        pt.add_column("Model", no_wrap=True)
        pt.add_column("clean", justify="right")
        for name in doc["perturbations"]:
            pt.add_column(name, justify="right")
        for r in doc["rows"]:
            cells = []
            for name in doc["perturbations"]:
                acc = r["perturbations"][name]["accuracy"]
                cells.append("-" if acc is None or r["accuracy"] is None
                             else f"{acc:.4f} ({100 * (acc - r['accuracy']):+.2f})")
            pt.add_row(escape(Path(r["model"]).stem), _fmt(r["accuracy"], ".4f"), *cells)
        console.print(pt)
    refs = sorted({Path(r["reference"]).name for r in doc["rows"] if r["reference"]})
    if doc["data"]:
        found = escape(", ".join(refs)) if refs else "none (no fp32 sibling found; pass --reference)"
        console.print(f"drift reference: {found}")
    load = host["load_average"]
    flags = host.get("cpu_flags")
    dot = {True: "yes", False: "no", None: "unknown"}[host.get("int8_dot_product")]
    console.print(f"host: {escape(host['cpu'])}, {host['cores']} cores ({host['usable_cores']} usable), "
                  f"{host['os']} ({host['arch']}); python {host['python']}, numpy {host['numpy']}, "
                  f"{host['interpreter']}" + (f"; load average {load[0]:.2f}" if load else ""))
    flags_text = "unknown" if flags is None else " ".join(flags) or f"none of {', '.join(CPU_FLAGS)}"
    console.print(f"cpu flags: {flags_text} (int8 dot product: {dot})")
    console.print(f"latency: {doc['method']['latency']}")
    if doc["data"]:
        console.print(f"throughput: {doc['method']['throughput']}")
        floors = ", ".join(f"{f['throughput_ips']:,.0f} img/s at {f['input_size']} px (passes: "
                           + ", ".join(f"{v:,.0f}" for v in f["passes_ips"]) + ")" for f in doc.get("floor", []))
        console.print(f"floor: {floors} = read + decode + preprocess alone, same workers, measured around each "
                      "model; × floor = its img/s / the faster floor pass around it")
    rec = doc.get("recommendation")
    if rec:
        name = escape(Path(rec["model"]).name)
        if rec["by"] == "throughput":
            why = (f"{rec['throughput_ips']:,.0f} img/s, {rec['floor_ratio']:.2f} × floor, accuracy {rec['accuracy']:.4f}: "
                   f"the fastest within {100 * rec['tolerance']:g} points of the most accurate, "
                   f"{escape(Path(rec['most_accurate']).stem)} ({rec['best_accuracy']:.4f})")
        else:
            why = f"{rec['latency_ms_p50']:.3f} ms/img: the lowest batch-1 latency (no --data, so accuracy not weighed)"
        console.print(f"[bold]use on this host: {name}[/] ({why})")


def print_errors(doc: dict, console, limit: int = 50) -> None:
    """List the files that could not be read (at most ``limit``; all are in the JSON)."""
    from rich.markup import escape

    for e in doc.get("model_errors", []):
        console.print(f"error: {escape(printable(e['error']))}", highlight=False, soft_wrap=True)
    errs = doc["errors"]
    if not errs:
        return
    for e in errs[:limit]:  # soft_wrap: one line per file, however narrow the console
        console.print(f"error: {escape(printable(e['path']))}: {escape(printable(e['error']))}", highlight=False,
                      soft_wrap=True)
    more = f" ({len(errs) - limit} more not shown; --json lists all)" if len(errs) > limit else ""
    console.print(f"{len(errs)} file(s) could not be read and were left out{more}", highlight=False, soft_wrap=True)


def write_csv(doc: dict, path: str | os.PathLike) -> None:
    """One line per model: the contract keys, then the extra figures and one accuracy column per perturbation."""
    from edgedetect.files import atomic_write_text

    extra = ["reference", "mean_abs_dp", "n_images", "input_size", "io", "threshold", "arch", "macs_per_image",
             "floor_ips", "floor_ratio"]
    pert_cols = [f"accuracy_{name}" for name in doc["perturbations"]]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*CONTRACT_KEYS, *extra, *pert_cols])
    for r in doc["rows"]:
        pert = [r["perturbations"][name]["accuracy"] for name in doc["perturbations"]]
        values = [*(r[k] for k in CONTRACT_KEYS), *(r[k] for k in extra), *pert]
        writer.writerow(["" if v is None else v for v in values])
    atomic_write_text(path, buf.getvalue())


def plot_bench(doc: dict, path: str | os.PathLike) -> None:
    """Latency (x) against accuracy (y; size when there is no data), one labelled bubble per model, area ~ size."""
    from edgedetect.plots import new_figure, place_labels, require_matplotlib, save_figure

    require_matplotlib("--plot")
    rows = doc["rows"]
    with_acc = all(r["accuracy"] is not None for r in rows)
    x = np.array([r["latency_ms_p50"] for r in rows])
    y = np.array([100 * r["accuracy"] if with_acc else r["size_bytes"] / 1e6 for r in rows])
    size_mb = np.array([r["size_bytes"] / 1e6 for r in rows])
    area = 80 + 1200 * size_mb / max(size_mb.max(), 1e-9)
    colors = {"fp32": "#1565c0", "fp16": "#6a1b9a", "dynamic": "#ef6c00", "int8": "#2e7d32"}
    fig = new_figure((8, 5.5), 120)
    ax = fig.add_subplot()
    for r, xi, yi, a in zip(rows, x, y, area):
        ax.scatter(xi, yi, s=a, alpha=0.55, color=colors.get(r["precision"], "#616161"), edgecolor="black", lw=0.6)
    if x.max() / max(x.min(), 1e-9) > 20:
        ax.set_xscale("log")
        ax.set_xlim(x.min() / 1.5, x.max() * 3)
    else:
        ax.set_xlim(0, x.max() * 1.35)
    pad = (y.max() - y.min()) * 0.15 or 1.0
    ax.set_ylim(y.min() - pad, y.max() + pad)
    labels = []
    for r, mb in zip(rows, size_mb):
        label = f"{Path(r['model']).stem}\n{mb:.2f} MB"
        if r["throughput_ips"]:
            label += f", {r['throughput_ips']:,.0f} img/s"
        labels.append(label)
    ax.set_xlabel("latency, batch 1 (ms per image, median)")
    ax.set_ylabel("accuracy (%)" if with_acc else "size (MB)")
    handles = [ax.scatter([], [], color=c, alpha=0.55, edgecolor="black", lw=0.6, label=k)
               for k, c in colors.items() if any(r["precision"] == k for r in rows)]
    legend = None
    if handles:
        legend = ax.legend(handles=handles, title="precision (bubble area ~ size)", fontsize=8, title_fontsize=8,
                           loc="lower right")
    host = doc["host"]
    data = Path(doc["data"]).name if doc["data"] else "no data"
    ax.set_title(f"edgedetect bench · {data} ({doc['n_images']:,} images)\n{host['cpu']}, {host['interpreter']}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # Labels are placed after the layout is final, each where it covers no other label, bubble or the legend
    # (models close together, such as a pair's fp16 and fp32, used to print on top of each other).
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72
    anchors = [tuple(ax.transData.transform((xi, yi))) for xi, yi in zip(x, y)]
    radii = [np.sqrt(a) / 2 * px_per_pt for a in area]
    texts = [ax.annotate(label, (xi, yi), xytext=(0, 0), textcoords="offset points", ha="center", va="center",
                         fontsize=8) for label, xi, yi in zip(labels, x, y)]
    sizes = [(t.get_window_extent(renderer).width, t.get_window_extent(renderer).height) for t in texts]
    obstacles = [tuple(legend.get_window_extent(renderer).extents)] if legend is not None else []
    offsets = place_labels(anchors, sizes, radii, tuple(ax.get_window_extent(renderer).extents), obstacles)
    for t in texts:  # measured; drawn again below at their places
        t.remove()
    for label, xi, yi, (dx, dy), rad in zip(labels, x, y, offsets, radii):
        ax.annotate(label, (xi, yi), xytext=(dx / px_per_pt, dy / px_per_pt), textcoords="offset points",
                    ha="center", va="center", fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "#777777", "lw": 0.6, "shrinkA": 0,
                                "shrinkB": rad / px_per_pt})
    save_figure(fig, path)
