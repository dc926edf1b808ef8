"""Classify image files with a .tflite detector: collect the inputs, decode them, run them in batches.

``predict_files`` is what ``edgedetect predict`` calls; it is just as usable from Python::

    from edgedetect.runtime import Classifier
    from edgedetect.predict import predict_files

    results = predict_files(Classifier("models/x_int8.tflite"), ["imgs/"])

A file that cannot be read gets an error entry and the run goes on; the interpreter is created once and fed
batches of decoded images.
"""

from __future__ import annotations

import glob
import json
import os
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from edgedetect import LABELS
from edgedetect.errors import EdgeDetectError
from edgedetect.listing import IMAGE_SUFFIXES, glob_images, list_images
from edgedetect.preprocess import load_image
from edgedetect.runtime import Classifier

DEFAULT_MANIFEST = "default.json"  # in the edgedetect.models package: {"model": "<file>.tflite"}


def default_model_path() -> Path:
    """The shipped default model named by ``models/default.json`` (installed as package ``edgedetect.models``).

    Raises:
        EdgeDetectError: no default model is installed, or the manifest names a missing file.
    """
    root = resources.files("edgedetect.models")
    manifest = root / DEFAULT_MANIFEST
    if not manifest.is_file():
        raise EdgeDetectError("no default model is installed with this copy of edgedetect "
                              "(models/default.json is missing); pass one with --model FILE.tflite")
    try:
        name = json.loads(manifest.read_text(encoding="utf-8"))["model"]
    except (ValueError, KeyError, TypeError) as e:
        raise EdgeDetectError(f"{manifest}: not a valid default-model manifest ({e!r}); it must be "
                              '{"model": "<file>.tflite"}; reinstall edgedetect or pass --model FILE.tflite') from None
    path = root / name
    if not path.is_file():
        raise EdgeDetectError(f"{manifest} names {name}, which is not installed beside it; "
                              "reinstall edgedetect or pass --model FILE.tflite")
    return Path(str(path))


def collect_inputs(paths: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand the user's PATH arguments into image files.

    A file is taken as given (whatever its suffix); a folder is searched recursively for image files
    (:func:`edgedetect.listing.list_images`: symlinked folders followed, each folder once); anything else is tried
    as a glob pattern (``**`` recurses, over the same loop-safe walk). A path that exists is never treated as a
    pattern, so names such as ``0000 (10).jpg`` or ``img[1].png`` work literally.

    Returns:
        ``(files, problems)``: the files in argument order without duplicates, and ``(argument or folder,
        problem)`` for each argument that yielded no image and each sub-folder that could not be listed.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(found: Iterable[Path]) -> int:
        n = 0
        for p in found:
            key = os.path.abspath(p)  # not resolve(): no syscalls per file; a file seen via two symlinks runs twice
            if key not in seen:
                seen.add(key)
                files.append(p)
            n += 1
        return n

    suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            try:
                listing = list_images(path)
            except EdgeDetectError as e:
                problems.append((arg, _problem(e, path)))
                continue
            problems += [(str(path / rel), problem) for rel, problem in listing.skipped]
            if not add(e.path for e in listing) and not listing.skipped:
                problems.append((arg, f"folder holds no image files ({suffixes})"))
        elif path.exists() or path.is_symlink():
            add([path])
        elif glob.has_magic(arg):
            found, matched, skipped = glob_images(arg)
            problems += [(str(p), problem) for p, problem in skipped]
            if not add(found):
                what = "matches no image files" if matched else "matches nothing"
                problems.append((arg, f"pattern {what}; check the pattern (quote it so the shell leaves it alone)"))
        else:
            problems.append((arg, "not found: no such file or folder"))
    return files, problems


def _problem(exc: EdgeDetectError, path: Path) -> str:
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _result(path: str, p_fake: Optional[float], threshold: float, error: Optional[str] = None) -> dict:
    label = None if p_fake is None else LABELS[int(p_fake >= threshold)]
    return {"path": path, "label": label, "p_fake": p_fake, "error": error}


def predict_files(
    classifier: Classifier,
    paths: Iterable[str],
    threshold: Optional[float] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> list[dict]:
    """Classify every image named by ``paths`` (files, folders, globs; see :func:`collect_inputs`).

    Images are decoded with :func:`edgedetect.preprocess.load_image` at the model's input size and run through
    the one interpreter ``classifier`` holds, ``classifier.batch_size`` at a time, so memory stays bounded on
    large folders.

    Args:
        classifier: the loaded model.
        paths: the user's PATH arguments.
        threshold: p_fake at or above which an image is FAKE [default: the model's metadata threshold].
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        One dict per file, in order, then one per argument that yielded nothing:
        ``{"path": str, "label": "REAL"|"FAKE"|None, "p_fake": float|None, "error": str|None}``.
    """
    threshold = classifier.threshold if threshold is None else float(threshold)
    files, problems = collect_inputs(paths)
    size = classifier.input_size
    results: list[dict] = []
    for start in range(0, len(files), classifier.batch_size):
        chunk = files[start : start + classifier.batch_size]
        arrays, ok = [], []
        chunk_results: list[Optional[dict]] = []
        for path in chunk:
            try:
                arrays.append(load_image(path, size))
                ok.append(len(chunk_results))
                chunk_results.append(None)
            except EdgeDetectError as e:
                chunk_results.append(_result(str(path), None, threshold, _problem(e, path)))
        if arrays:
            p_fake = classifier.predict(np.stack(arrays))
            for i, p in zip(ok, p_fake):
                chunk_results[i] = _result(str(chunk[i]), float(p), threshold)
        results.extend(chunk_results)
        if progress:
            progress(start + len(chunk), len(files))
    results.extend(_result(arg, None, threshold, problem) for arg, problem in problems)
    return results


def summarize(results: list[dict]) -> dict:
    """Counts of FAKE, REAL and failed results."""
    return {
        "n_images": len(results),
        "n_fake": sum(r["label"] == "FAKE" for r in results),
        "n_real": sum(r["label"] == "REAL" for r in results),
        "n_failed": sum(r["error"] is not None for r in results),
    }


def model_description(classifier: Classifier) -> str:
    """One line naming the model: file, precision, input size."""
    meta = classifier.metadata
    return f"{classifier.path.name} ({meta.arch}, {meta.precision}, {classifier.input_size}x{classifier.input_size})"
