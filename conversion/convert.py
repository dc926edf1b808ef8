"""Keras or SavedModel -> self-describing .tflite files at fp32, fp16, dynamic-range or full-integer int8.

Every output is named by its precision (``<stem>_int8.tflite``), written atomically, never overwritten without
``force``, holds builtin TFLite ops only (no Flex/Select-TF ops, so the interpreter-only runtime runs it) and gets
its metadata sidecar (``<stem>_int8.json``): labels, input size, preprocessing, threshold, precision, I/O type,
provenance and, for int8, the calibration set.

int8 is post-training full-integer quantization calibrated on real images decoded by the runtime's own
preprocessing (:func:`edgedetect.data.load_dataset` -> :func:`edgedetect.preprocess.load_image`), a seeded,
class-balanced sample. Without calibration data int8 is an error, never random noise.

The steps live in one module each: :mod:`conversion.source` (the model), :mod:`conversion.calibration` (the images),
:mod:`conversion.recipes` (one converter recipe per row of :data:`edgedetect.precision.TABLE`),
:mod:`conversion.model_metadata` (the sidecar) and :mod:`conversion.report` (the agreement check).

After converting, each file is run with the interpreter-only :class:`edgedetect.runtime.Classifier` on the
calibration images and compared with the source model (max |Δp|, label flips at the model's threshold).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_bytes, check_writable
from edgedetect.metadata import sidecar_path, write_metadata
from edgedetect.precision import BY_NAME, IO_TYPES, PRECISIONS, REFERENCE
from conversion.calibration import (CALIB_SEED, DEFAULT_NUM_CALIB, MIN_SENSIBLE_CALIB, calibration_source,
                                    load_calibration, load_crop_calibration)
from conversion.model_metadata import build_metadata, model_arch, run_front
from conversion.recipes import convert_float, convert_int8, keep_float_ops, quiet
from conversion.report import ConversionReport, OutputReport, check_agreement
from conversion.source import Log, load_source, resolve_model
from training.run import BEST, LAST, Run


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class ConversionConfig:
    """What to convert to and how (pure data; see the named constructors).

    Attributes:
        precisions: any of fp32, fp16, dynamic, int8.
        calib: calibration dataset (folder/.tar.gz/.zip with REAL/FAKE folders, or a plain folder of images);
            None: the training run's data when the model comes from a run.
        num_calib: calibration images, balanced over the classes, drawn with ``seed``.
        io: input/output tensor type of the int8 file: float, int8 or uint8.
        out: output folder, or with a single precision a ``.tflite`` file path; None: beside the model.
        debug: run the quantization debugger and write the per-layer error table (int8).
        keep_float: op names (``HARD_SWISH``) or layer names left in float in the int8 file; ``()`` for full
            integer; None (default) keeps HARD_SWISH float when the model has it and the I/O is float (see
            :data:`conversion.recipes.AUTO_KEEP_FLOAT`).
        force: overwrite existing outputs.
        check: compare every output with the source model on the calibration images.
    """

    precisions: tuple[str, ...] = ("fp32",)
    calib: Optional[str] = None
    num_calib: int = DEFAULT_NUM_CALIB
    io: str = "float"
    out: Optional[str] = None
    debug: bool = False
    keep_float: Optional[tuple[str, ...]] = None
    force: bool = False
    seed: int = CALIB_SEED
    check: bool = True

    @classmethod
    def for_float(cls, precision: str = "fp32", **kwargs) -> "ConversionConfig":
        """One float file: fp32, fp16 (float16 weights) or dynamic (int8 weights, float activations)."""
        return cls(precisions=(precision,), **kwargs)

    @classmethod
    def for_int8(cls, calib: Optional[str] = None, num_calib: int = DEFAULT_NUM_CALIB, io: str = "float",
                 **kwargs) -> "ConversionConfig":
        """Full-integer int8 calibrated on ``num_calib`` images of ``calib``."""
        return cls(precisions=("int8",), calib=calib, num_calib=num_calib, io=io, **kwargs)

    @classmethod
    def for_all(cls, calib: Optional[str] = None, num_calib: int = DEFAULT_NUM_CALIB, **kwargs) -> "ConversionConfig":
        """All four precisions in one go."""
        return cls(precisions=PRECISIONS, calib=calib, num_calib=num_calib, **kwargs)

    @classmethod
    def from_quant(cls, quant: str, **kwargs) -> "ConversionConfig":
        """``--quant`` value (a precision or ``all``) -> config."""
        if quant == "all":
            return cls(precisions=PRECISIONS, **kwargs)
        return cls(precisions=(quant,), **kwargs)

    def validate(self) -> None:
        """Raise EdgeDetectError for combinations that make no sense."""
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise EdgeDetectError(f"--quant {', '.join(bad) or '(none)'}: valid are {', '.join(PRECISIONS)} or all")
        if self.io not in IO_TYPES:
            raise EdgeDetectError(f"--io {self.io}: valid are {', '.join(IO_TYPES)}")
        int8 = "int8" in self.precisions
        if self.io != "float" and not int8:
            raise EdgeDetectError(f"--io {self.io} needs an int8 output (only full-integer models have integer "
                                  f"tensors); add --quant int8 or use --io float")
        for flag, used in (("--debug", self.debug), ("--keep-float", bool(self.keep_float))):
            if used and not int8:
                raise EdgeDetectError(f"{flag} applies to int8 quantization; add --quant int8 (or all)")
        if self.num_calib < 1:
            raise EdgeDetectError(f"--num-calib must be at least 1; received {self.num_calib}")
        if self.out and str(self.out).lower().endswith(".tflite") and len(self.precisions) > 1:
            raise EdgeDetectError(f"--out {self.out}: a single file cannot hold {len(self.precisions)} precisions; "
                                  "give a folder, or pick one --quant")


def output_paths(model_path: Path, run: Optional[Run], config: ConversionConfig) -> dict[str, Path]:
    """Where each precision goes: ``<folder>/<stem>_<precision>.tflite`` (the suffix is the precision table's).

    The stem is the model's (``model.keras`` -> ``model``); a run's ``best.keras``/``last.keras`` use the run
    folder's name, since "best_int8.tflite" says nothing once copied elsewhere.
    """
    stem = model_path.name if model_path.is_dir() else model_path.stem
    if run is not None and model_path.name in (BEST, LAST):
        stem = run.path.name + ("" if model_path.name == BEST else "_last")
    if config.out and str(config.out).lower().endswith(".tflite"):
        return {config.precisions[0]: Path(config.out)}
    folder = Path(config.out) if config.out else model_path.parent
    return {p: folder / BY_NAME[p].file_name(stem) for p in config.precisions}


def debug_csv_path(int8_path: Path) -> Path:
    return int8_path.with_name(f"{int8_path.stem}_debug.csv")


def convert(model_path: Optional[str | os.PathLike], config: ConversionConfig, log: Optional[Log] = None,
            progress: bool = False) -> ConversionReport:
    """Convert a .keras file or SavedModel folder to .tflite files described by ``config``.

    Args:
        model_path: .keras file or SavedModel folder; None: the latest training run's best.keras.
        config: precisions, calibration, outputs (see :class:`ConversionConfig`).
        log: receives one line per notable step (which model and data, warnings); default: stderr.
        progress: show a progress bar while decoding calibration images.

    Returns:
        The report: written paths, sizes and agreement with the source model.

    Raises:
        EdgeDetectError: bad options, missing model or calibration data, outputs that exist (without force),
            a model needing non-builtin ops, or a failed conversion.
    """
    log = log or _stderr
    config.validate()
    path = resolve_model(model_path, log)
    run = Run.around(path)
    targets = output_paths(path, run, config)
    int8 = any(BY_NAME[p].needs_calibration for p in targets)  # the full-integer recipe: calibration images
    to_check = [*targets.values(), *(sidecar_path(p) for p in targets.values())]
    if int8 and config.debug:
        to_check.append(debug_csv_path(targets["int8"]))
    out_folder = next(iter(targets.values())).parent
    if config.out and not str(config.out).lower().endswith(".tflite") and not out_folder.exists():
        out_folder.mkdir(parents=True)
    for target in to_check:  # every output before any work: never half a set of files
        check_writable(target, config.force)

    settings = run.settings if run is not None else {}
    crops_run = settings.get("preprocess") == "crops"
    if crops_run and not config.calib:  # native-resolution run: calibrate on its own sources' crops
        calib_source, calib_origin = None, "the run's training sources"
    else:
        calib_source, calib_origin = calibration_source(config.calib, run, int8)

    with quiet():
        src = load_source(path)
    arch = model_arch(run)
    front = run_front(run)
    threshold = run.threshold if run is not None and run.threshold is not None else 0.5
    notes: list[str] = []
    calib = None
    if crops_run and not config.calib and (int8 or config.check):
        calib = load_crop_calibration(settings["data"], src.input_size, config.num_calib,
                                      int(run.metrics.get("max_crops", settings.get("max_crops", 16))), config.seed,
                                      progress=progress)
    elif calib_source is not None and (int8 or config.check):
        calib = load_calibration(calib_source, src.input_size, config.num_calib, config.seed, progress=progress)
    if calib is not None:
        use = "calibration and agreement check" if int8 else "agreement check"
        log(f"data: {calib.source} ({calib_origin}), split {calib.split}: {len(calib.x)} images "
            f"{calib.counts()} of {calib.available}, seed {calib.seed}, for {use}")
        if int8 and len(calib.x) < MIN_SENSIBLE_CALIB:
            notes.append(f"warning: only {len(calib.x)} calibration images; int8 ranges from fewer than "
                         f"{MIN_SENSIBLE_CALIB} may clip real inputs, use more (--num-calib {DEFAULT_NUM_CALIB} is the default)")
            log(notes[-1])
    elif config.check:
        notes.append("no images to check agreement on: pass --calib DATA to compare the files with the source model")

    calibration_meta = calib.describe() if (int8 and calib is not None) else None
    blobs: dict[str, bytes] = {}
    debug_rows, kept = [], {"ops": [], "nodes": []}
    keep_float: tuple[str, ...] = ()
    for precision in PRECISIONS:  # fp32 always (and first): the reference size, and its ops decide AUTO_KEEP_FLOAT
        if precision not in targets and precision != REFERENCE:
            continue
        if BY_NAME[precision].needs_calibration:
            keep_float = keep_float_ops(config, blobs[REFERENCE], log, front)
            blobs[precision], debug_rows, kept = convert_int8(src, calib, config, keep_float)
        else:
            blobs[precision] = convert_float(src, precision)
    fp32_size = len(blobs[REFERENCE])

    # Everything is verified before anything is written: a failure leaves no partial set of files.
    from conversion.debug import delegate_partitions, float_compute_ops, io_dtypes

    planned = []
    for precision, target in targets.items():
        data, io, float_ops, meta_calib = blobs[precision], "float", {}, None
        if BY_NAME[precision].needs_calibration:  # the full-integer file: its I/O type and what stayed in float
            io = config.io
            want = ("float32", "float32") if io == "float" else (io, io)
            if io_dtypes(data) != want:  # a bug, not a user mistake: the file would not be what it says
                raise RuntimeError(f"int8 conversion produced I/O {io_dtypes(data)}, expected {want}")
            float_ops = dict(float_compute_ops(data))
            meta_calib = dict(calibration_meta or {})
            if kept["ops"] or kept["nodes"]:
                meta_calib["keep_float"] = {"requested": list(keep_float), "ops": kept["ops"],
                                            "nodes": kept["nodes"], "float_ops_in_model": float_ops}
                missing = [op for op in kept["ops"] if op not in float_ops]
                if missing:
                    notes.append(f"warning: --keep-float {', '.join(missing)}: the converter quantized them anyway")
                    log(notes[-1])
        meta = build_metadata(src, run, precision, io, threshold, meta_calib)
        planned.append((OutputReport(precision, target, len(data), io, float_ops=float_ops), data, meta))
    for report, data, meta in planned:
        atomic_write_bytes(report.path, data)
        write_metadata(report.path, meta)

    ref = src.predict(calib.x) if calib is not None and config.check else None
    outputs = [report for report, _, _ in planned]
    for report in outputs:
        with quiet():
            report.delegate_partitions = delegate_partitions(report.path)
            if ref is not None:
                check_agreement(report, ref, calib, threshold)

    debug_csv = None
    if debug_rows:
        from conversion.debug import write_debug_csv

        debug_csv = write_debug_csv(debug_csv_path(targets["int8"]), debug_rows)
    ref_acc = float(((ref >= threshold) == (calib.y == 1)).mean()) if ref is not None and calib.y is not None else None
    return ConversionReport(path, arch, src.input_size, threshold, outputs, fp32_size, calibration_meta, ref_acc,
                            debug_csv, debug_rows, notes)
