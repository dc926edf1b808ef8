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
from edgedetect.errors import EdgeDetectError, ImageError
from edgedetect.listing import IMAGE_SUFFIXES, glob_images, list_images
from edgedetect.preprocess import open_image
from edgedetect.resolve import resolve_threshold
from edgedetect.runtime import Classifier

DEFAULT_MANIFEST = "default.json"  # in the edgedetect.models package: {"model": "<file>.tflite"}


def default_model_path(key: str = "model") -> Optional[Path]:
    """The shipped default model named by ``models/default.json`` (installed as package ``edgedetect.models``).

    ``key="photo_model"`` names the native-resolution model used for large images; None when there is none.

    Raises:
        EdgeDetectError: no default model is installed, or the manifest names a missing file.
    """
    root = resources.files("edgedetect.models")
    manifest = root / DEFAULT_MANIFEST
    if not manifest.is_file():
        raise EdgeDetectError("no default model is installed with this copy of edgedetect "
                              "(models/default.json is missing); pass one with --model FILE.tflite")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        if key != "model" and key not in doc:
            return None
        name = doc[key]
        if not isinstance(name, str):
            raise TypeError(f"{key} is {name!r}, not a file name")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
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
    """A folder's listing error without the folder's name (the report names it)."""
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _result(path: str, p_fake: Optional[float], threshold: float, error: Optional[str] = None, model=None,
            info: Optional[dict] = None) -> dict:
    label = None if p_fake is None else LABELS[int(p_fake >= threshold)]
    return {"path": path, "label": label, "p_fake": p_fake, "error": error,
            "model": None if model is None else model.path.name, "threshold": threshold,
            "size": None if info is None else info["size"], "warning": None if info is None else info["warning"]}


class AutoModel:
    """The shipped pair: a 32-px model for small images and a native-resolution photo model for the rest.

    An image whose shorter side is below the photo model's crop goes to the small model (CIFAKE-sized images keep
    the accuracy they had); every other image goes to the photo model. Each result names the model that decided.
    """

    def __init__(self, small: Classifier, photo: Classifier):
        self.small, self.photo = small, photo
        self.batch_size = photo.batch_size
        self.min_side = photo.input_size

    def pick(self, width: int, height: int) -> Classifier:
        return self.photo if min(width, height) >= self.min_side else self.small

    @property
    def models(self) -> list[Classifier]:
        return [self.small, self.photo]


def load_default_models(threads: Optional[int] = None):
    """The shipped default: an :class:`AutoModel` when ``models/default.json`` names a photo model, else one model."""
    small = Classifier(default_model_path(), threads=threads)
    photo = default_model_path("photo_model")
    return AutoModel(small, Classifier(photo, threads=threads)) if photo is not None else small


def predict_files(
    classifier: Classifier | AutoModel,
    paths: Iterable[str],
    threshold: Optional[float] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> list[dict]:
    """Classify every image named by ``paths`` (files, folders, globs; see :func:`collect_inputs`).

    Each image is decoded once (:func:`edgedetect.preprocess.open_image`), turned into the chosen model's inputs
    (:meth:`Classifier.inputs_for`: the resized image, or native-resolution crops), and the inputs of several
    images run through the interpreter together, about ``batch_size`` at a time, so memory stays bounded.

    Args:
        classifier: the loaded model, or an :class:`AutoModel` that picks one per image by its size.
        paths: the user's PATH arguments.
        threshold: p_fake at or above which an image is FAKE [default: the deciding model's metadata threshold].
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        One dict per file, in order, then one per argument that yielded nothing: ``{"path", "label": "REAL"|"FAKE"|
        None, "p_fake": float|None, "error": str|None, "model": file name, "threshold", "size": [w, h],
        "warning": str|None}``.
    """
    files, problems = collect_inputs(paths)
    results: list[Optional[dict]] = [None] * len(files)
    pending: dict = {}  # model -> [(result index, inputs, info)]
    counts: dict = {}

    def flush(model: Classifier) -> None:
        items = pending.pop(model, [])
        if not items:
            return
        p_all = model.predict(np.concatenate([arrays for _, arrays, _ in items]))
        t = model.resolve_threshold(threshold).value
        start = 0
        for i, arrays, info in items:
            p_crops = p_all[start : start + len(arrays)]
            start += len(arrays)
            results[i] = _result(str(files[i]), model.combine(p_crops), t, model=model, info=info)

    for i, path in enumerate(files):
        try:
            img = open_image(path)
            model = classifier.pick(*img.size)
            arrays, info = model.inputs_for(img)
        except ImageError as e:
            results[i] = _result(str(path), None, resolve_threshold(threshold).value, e.problem)
            continue
        pending.setdefault(model, []).append((i, arrays, info))
        counts[model] = counts.get(model, 0) + len(arrays)
        if counts[model] >= model.batch_size:
            flush(model)
            counts[model] = 0
            if progress:
                progress(i + 1, len(files))
    for model in list(pending):
        flush(model)
    if progress:
        progress(len(files), len(files))
    out = [r for r in results if r is not None]
    out.extend(_result(arg, None, resolve_threshold(threshold).value, problem) for arg, problem in problems)
    return out


def summarize(results: list[dict]) -> dict:
    """Counts of FAKE, REAL and failed results."""
    return {
        "n_images": len(results),
        "n_fake": sum(r["label"] == "FAKE" for r in results),
        "n_real": sum(r["label"] == "REAL" for r in results),
        "n_failed": sum(r["error"] is not None for r in results),
    }


def model_description(classifier: Classifier | AutoModel) -> str:
    """One line naming the model: file, precision, input size and mode (both models of an :class:`AutoModel`)."""
    if isinstance(classifier, AutoModel):
        return (f"{model_description(classifier.small)} for images under {classifier.min_side} px, "
                f"{model_description(classifier.photo)} for the rest")
    meta = classifier.metadata
    s = classifier.input_size
    what = f"{s}-px crops, {meta.preprocessing.get('combine', 'mean')} of up to {meta.preprocessing.get('max_crops')}" \
        if classifier.mode == "crops" else f"{s}x{s}"
    return f"{classifier.path.name} ({meta.arch}, {meta.precision}, {what})"
