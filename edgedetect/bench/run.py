"""The bench itself: :class:`BenchConfig` in, the JSON document out (:func:`run_bench`), and the recommendation."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgedetect.bench.host import host_info, usable_cores
from edgedetect.bench.images import load_image_set
from edgedetect.bench.latency import measure_latency
from edgedetect.bench.models import model_precision, family_reference, shipped_models
from edgedetect.bench.perturb import parse_perturbations
from edgedetect.bench.pool import WorkerPool
from edgedetect.errors import EdgeDetectError
from edgedetect.macs import model_macs
from edgedetect.metrics import binary_metrics
from edgedetect.model_check import check_threads
from edgedetect.runtime import DEFAULT_BATCH, Classifier

CONTRACT_KEYS = ("model", "precision", "size_bytes", "latency_ms_p50", "latency_ms_p90", "throughput_ips",
                 "accuracy", "precision_fake", "recall_fake", "f1", "roc_auc", "delta_accuracy", "agreement",
                 "max_abs_dp")
Log = Callable[[str], None]


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
        precision = clf.metadata.precision if clf.metadata.precision != "unknown" else model_precision(model)
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


def _row_line(row: dict) -> str:
    parts = [f"{Path(row['model']).name}: {row['latency_ms_p50']:.3f} ms/img (batch 1)"]
    if row["throughput_ips"] is not None:
        parts.append(f"{row['throughput_ips']:,.0f} img/s")
        if row["floor_ratio"] is not None:
            parts.append(f"{row['floor_ratio']:.2f} x floor ({row['floor_ips']:,.0f} img/s)")
    if row["accuracy"] is not None:
        parts.append(f"accuracy {row['accuracy']:.4f}")
    return ", ".join(parts)
