"""Show where a model's evidence is, with the interpreter alone: occlusion maps and per-crop maps.

Grad-CAM needs gradients, so the training framework; an edge device has only the interpreter. What the
interpreter can do is run the model on changed copies of the image, so the maps here are made that way:

* **occlusion** (models that resize the image to a small square, e.g. 32 px): every ``patch`` x ``patch``
  square of the model input, stepped by ``stride``, is replaced by a blurred copy of itself (``fill="blur"``:
  the fine detail generators leave is gone, the colours and shapes stay) or by the image's mean colour
  (``fill="mean"``). All the occluded copies and the original run as one batch; the map at a pixel is the mean
  drop in p_fake over the squares that cover it. Positive: that region pushes the model towards FAKE.
  Cost: ``((S - patch) / stride + 1)**2 + 1`` images, in ``ceil(images / batch_size)`` invokes (170 images, one
  invoke, for a 32-px model with the defaults).
* **crops** (native-resolution models that score crops of the full image): the map at a pixel is the mean
  p_fake of the crops that cover it (:func:`crop_map`); it costs nothing beyond the prediction itself.

``explain_files`` is what ``edgedetect explain`` calls; ``edgedetect.explain_render`` draws the picture with
Pillow alone. Grad-CAM for ``.keras`` models lives in ``training/gradcam.py`` and returns the same
:class:`Explanation`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageFilter

from edgedetect import LABELS
from edgedetect.errors import EdgeDetectError, ImageError
from edgedetect.preprocess import open_image, to_array
from edgedetect.runtime import Classifier, domain_warning

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right and bottom exclusive, in pixels
FILLS = {"blur": "blurred", "mean": "filled with the mean colour"}  # --fill value -> what happens to a square
BLUR_RADIUS_FRACTION = 1 / 16  # Gaussian blur radius as a fraction of the input side: 2 px at 32 px


@dataclass
class Explanation:
    """One image's decision and the map of where its evidence is.

    Attributes:
        path: the image's path (or a name for uploaded bytes).
        label: REAL or FAKE.
        p_fake: the model's p_fake for the image (the same number ``predict`` gives).
        threshold: p_fake at or above which the image is FAKE.
        method: ``occlusion``, ``crops`` or ``grad-cam``.
        heatmap: float array (rows, cols) over ``region``.
        region: the part of the image the map covers, ``(left, top, right, bottom)`` in image pixels (for
            resize models, the centre square the model sees).
        image_size: ``(width, height)`` of the decoded image.
        neutral: the heatmap value that means "no evidence either way" (0 for occlusion and Grad-CAM, the
            threshold for crop scores); above it is evidence for FAKE, below it for REAL.
        meaning: one sentence saying what the numbers of the heatmap are.
        params: the method's settings (patch, stride, fill, layer, ...).
        n_images: images run through the model for this explanation.
        n_invokes: interpreter invokes (or Keras calls) for this explanation.
        seconds: wall time of decode + model runs + map.
    """

    path: str
    label: str
    p_fake: float
    threshold: float
    method: str
    heatmap: np.ndarray
    region: Box
    image_size: tuple[int, int]
    neutral: float = 0.0
    meaning: str = ""
    params: dict = field(default_factory=dict)
    n_images: int = 1
    n_invokes: int = 1
    seconds: float = 0.0
    model: str = ""
    warning: str | None = None

    def peak(self) -> dict:
        """Where the evidence for FAKE is strongest: map cell and the matching point in image pixels."""
        row, col = np.unravel_index(int(np.nanargmax(self.heatmap)), self.heatmap.shape)
        left, top, right, bottom = self.region
        rows, cols = self.heatmap.shape
        x = left + (col + 0.5) * (right - left) / cols
        y = top + (row + 0.5) * (bottom - top) / rows
        return {"row": int(row), "col": int(col), "value": float(self.heatmap[row, col]),
                "image_xy": [round(float(x), 1), round(float(y), 1)]}

    def to_dict(self, with_map: bool = True) -> dict:
        doc = {"path": self.path, "label": self.label, "p_fake": self.p_fake, "threshold": self.threshold,
               "method": self.method, "params": self.params, "images_run": self.n_images, "invokes": self.n_invokes,
               "ms": round(1000 * self.seconds, 2), "image_size": list(self.image_size), "model": self.model,
               "warning": self.warning, "error": None}
        if with_map:
            values = np.where(np.isnan(self.heatmap), None, np.round(self.heatmap, 4).astype(object))
            doc["map"] = {"shape": list(self.heatmap.shape), "region": list(self.region), "neutral": self.neutral,
                          "meaning": self.meaning, "peak": self.peak(), "values": values.tolist()}
        return doc


def _positions(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:  # the last row/column of pixels is always covered
        starts.append(size - patch)
    return starts


def default_patch(input_size: int) -> tuple[int, int]:
    """``(patch, stride)`` for an input side: a quarter of it, stepped by a quarter of the patch (8 and 2 at 32 px)."""
    patch = max(2, input_size // 4)
    return patch, max(1, patch // 4)


def occlusion_boxes(size: int, patch: int, stride: int) -> list[Box]:
    """The squares occluded one at a time, in input pixels; they cover every pixel."""
    if not 1 <= patch <= size:
        raise EdgeDetectError(f"--patch {patch}: must be between 1 and the model's input size {size}")
    if not 1 <= stride <= patch:
        raise EdgeDetectError(f"--stride {stride}: must be between 1 and the patch size {patch} (larger leaves gaps)")
    starts = _positions(size, patch, stride)
    return [(x, y, x + patch, y + patch) for y in starts for x in starts]


def occluded_copies(x: np.ndarray, boxes: Sequence[Box], fill: str = "blur") -> np.ndarray:
    """``x`` (S, S, 3) uint8 with each box in turn replaced by the fill; returns (len(boxes), S, S, 3) uint8."""
    if fill == "blur":
        radius = max(1.0, x.shape[0] * BLUR_RADIUS_FRACTION)
        filler = np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(radius)))
    elif fill == "mean":
        filler = np.broadcast_to(np.rint(x.reshape(-1, 3).mean(0)).astype(np.uint8), x.shape)
    else:
        raise EdgeDetectError(f"--fill {fill!r}: valid values are {', '.join(FILLS)}")
    out = np.repeat(x[None], len(boxes), axis=0)
    for i, (left, top, right, bottom) in enumerate(boxes):
        out[i, top:bottom, left:right] = filler[top:bottom, left:right]
    return out


def occlusion_map(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, patch: int, stride: int,
                  fill: str = "blur") -> tuple[float, np.ndarray, int]:
    """Occlusion sensitivity of ``predict`` (uint8 NHWC -> p_fake) at the model-input image ``x`` (S, S, 3).

    Returns:
        ``(p_fake, map, n_images)``: p_fake of ``x``; float map with one cell per ``stride`` x ``stride`` pixels
        (the finest detail the squares resolve), each the mean of ``p_fake(x) - p_fake(x with a box occluded)``
        over the boxes covering it; images run (one batch).
    """
    size = x.shape[0]
    boxes = occlusion_boxes(size, patch, stride)
    batch = np.concatenate([x[None], occluded_copies(x, boxes, fill)])
    p = np.asarray(predict(batch), dtype=np.float64)
    drops = p[0] - p[1:]
    return float(p[0]), crop_map((size, size), boxes, drops, cell=stride, empty=0.0), len(batch)


def crop_map(image_size: tuple[int, int], boxes: Sequence[Box], scores: Sequence[float],
             cell: int = 1, empty: float = float("nan")) -> np.ndarray:
    """Rasterise per-box scores over an image: each pixel gets the mean score of the boxes that cover it.

    This is the map of a native-resolution model (boxes = its crops, scores = each crop's p_fake) and the
    accumulator of the occlusion map (boxes = occluded squares, scores = drops in p_fake).

    Args:
        image_size: ``(width, height)`` in pixels.
        boxes: ``(left, top, right, bottom)`` per crop, right/bottom exclusive; parts outside the image are cut off.
        scores: one number per box.
        cell: the map's pixel size; ``cell=8`` gives a map 8 times smaller (block means of the full-size one).
        empty: the value of pixels no box covers.

    Returns:
        float64 array of shape ``(ceil(height / cell), ceil(width / cell))``.

    Raises:
        EdgeDetectError: boxes and scores differ in number, or a box is empty.
    """
    width, height = image_size
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise EdgeDetectError(f"crop_map: {len(boxes)} boxes but {len(scores)} scores; expected one score per box")
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    total = np.zeros((rows, cols))
    weight = np.zeros((rows, cols))
    for (left, top, right, bottom), s in zip(boxes, scores):
        if right <= left or bottom <= top:
            raise EdgeDetectError(f"crop_map: empty box {(left, top, right, bottom)}; expected left < right, top < bottom")
        # Coverage of each map cell by the box, as a fraction of the cell, so a coarse map stays a true mean.
        xs = np.clip(np.minimum(np.arange(1, cols + 1) * cell, right) - np.maximum(np.arange(cols) * cell, left), 0, None)
        ys = np.clip(np.minimum(np.arange(1, rows + 1) * cell, bottom) - np.maximum(np.arange(rows) * cell, top), 0, None)
        cover = np.outer(ys, xs) / float(cell * cell)
        total += cover * s
        weight += cover
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / weight
    out[weight == 0] = empty
    return out


def _centre_square(width: int, height: int) -> Box:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


class Explainer:
    """Explains the decisions of a loaded .tflite model with the interpreter alone.

    Args:
        classifier: the model.
        patch, stride: occlusion square and step in model-input pixels [default: :func:`default_patch`].
        fill: ``blur`` or ``mean`` (what replaces an occluded square).
        threshold: p_fake at or above which an image is FAKE [default: the model's].
    """

    def __init__(self, classifier: Classifier, patch: int | None = None, stride: int | None = None,
                 fill: str = "blur", threshold: float | None = None):
        self.clf = classifier
        self.threshold = classifier.resolve_threshold(threshold).value
        self.mode = classifier.mode
        if self.mode not in ("resize", "crops"):
            raise EdgeDetectError(f"{classifier.path}: preprocessing mode {self.mode!r} in its metadata is not one "
                                  "explain knows (resize, crops)")
        if self.mode == "crops" and (patch is not None or stride is not None or fill != "blur"):
            raise EdgeDetectError(f"{classifier.path}: a native-resolution model, explained by its crop scores; "
                                  "--patch, --stride and --fill set the occlusion of resize models, drop them")
        dp, ds = default_patch(classifier.input_size)
        self.patch = dp if patch is None else patch
        self.stride = (ds if patch is None else max(1, self.patch // 4)) if stride is None else stride
        if fill not in FILLS:
            raise EdgeDetectError(f"--fill {fill!r}: valid values are {', '.join(FILLS)}")
        self.fill = fill
        if self.mode == "resize":
            occlusion_boxes(classifier.input_size, self.patch, self.stride)  # check the settings before any work

    @property
    def images_per_explanation(self) -> int:
        """Images run per explained image (occlusion; for crop models it depends on the image size)."""
        return len(occlusion_boxes(self.clf.input_size, self.patch, self.stride)) + 1

    def method_line(self) -> str:
        if self.mode == "crops":
            return "per-crop p_fake over the image (no extra model runs)"
        n = self.images_per_explanation
        invokes = math.ceil(n / self.clf.batch_size)
        return (f"occlusion: {self.patch}x{self.patch} squares every {self.stride} px {FILLS[self.fill]}, "
                f"{n} images in {invokes} invoke{'s' if invokes > 1 else ''}")

    def explain(self, source: Union[str, os.PathLike, bytes], name: str | None = None) -> tuple[Explanation, Image.Image]:
        """Decode ``source`` (path or bytes) and explain the model's decision on it.

        Returns:
            ``(explanation, image)``: the image is the decoded RGB picture, for :func:`render_explanation`.

        Raises:
            ImageError: the source is not a readable image.
        """
        start = time.perf_counter()
        img = open_image(source)
        name = name if name is not None else ("<bytes>" if isinstance(source, (bytes, bytearray)) else str(source))
        return self.explain_image(img, name, start), img

    def explain_image(self, img: Image.Image, name: str, start: float | None = None) -> Explanation:
        """Explain a decoded image (``start``: the perf_counter time its decoding began, for ``seconds``)."""
        start = time.perf_counter() if start is None else start
        e = self._crops(img, name) if self.mode == "crops" else self._occlusion(img, name)
        e.model = self.clf.path.name
        e.warning = domain_warning(self.clf.metadata, img.size, bool(e.params.get("padded")))
        e.seconds = time.perf_counter() - start
        return e

    def _occlusion(self, img: Image.Image, name: str) -> Explanation:
        x = to_array(img, self.clf.input_size)
        p_fake, heat, n = occlusion_map(self.clf.predict, x, self.patch, self.stride, self.fill)
        return Explanation(
            path=name, label=LABELS[int(p_fake >= self.threshold)], p_fake=p_fake, threshold=self.threshold,
            method="occlusion", heatmap=heat, region=_centre_square(*img.size), image_size=img.size,
            meaning=f"drop in p_fake when a {self.patch}x{self.patch} square around the pixel is "
                    f"{FILLS[self.fill]} (mean over the squares covering it); one cell per {self.stride}x{self.stride} "
                    "pixels of the model input",
            params={"patch": self.patch, "stride": self.stride, "fill": self.fill, "input_size": self.clf.input_size},
            n_images=n, n_invokes=math.ceil(n / self.clf.batch_size))

    def _crops(self, img: Image.Image, name: str) -> Explanation:
        # The same crops and the same combine rule as predict (Classifier.inputs_for / combine), so explain and
        # predict report the same p_fake; the map is each crop's p_fake over the pixels it covers.
        crops, info = self.clf.inputs_for(img)
        boxes = info["boxes"]
        scores = self.clf.predict(crops)
        p_fake = self.clf.combine(scores)
        crop_size = self.clf.input_size
        cell = max(1, crop_size // 8)
        rule = self.clf.metadata.preprocessing.get("combine", "mean")
        return Explanation(
            path=name, label=LABELS[int(p_fake >= self.threshold)], p_fake=p_fake, threshold=self.threshold,
            method="crops", heatmap=crop_map(img.size, boxes, scores, cell=cell), region=(0, 0, *img.size),
            image_size=img.size, neutral=self.threshold,
            meaning=f"mean p_fake of the {crop_size}x{crop_size} crops covering each {cell}x{cell} cell "
                    f"(the image's p_fake is the {rule} of the {len(boxes)} crops' p_fake)",
            params={"crop_size": crop_size, "crops": len(boxes), "cell": cell, "combine": rule, "padded": info["padded"]},
            n_images=len(boxes),
            n_invokes=math.ceil(len(boxes) / self.clf.batch_size))


class AutoExplainer:
    """Explains each image with the model ``predict`` would pick for it (an :class:`AutoModel`'s small or photo
    model), so explain, predict and the demo agree on the p_fake of every image."""

    def __init__(self, auto, threshold: float | None = None):
        self.auto = auto
        self.explainers = {id(m): Explainer(m, threshold=threshold) for m in auto.models}
        self.mode = "auto"
        self.threshold = threshold  # None: each image against the threshold of the model that decided it

    def for_image(self, img: Image.Image) -> Explainer:
        return self.explainers[id(self.auto.pick(*img.size))]

    def method_line(self) -> str:
        return " | ".join(f"{e.clf.path.name}: {e.method_line()}" for e in self.explainers.values())

    def explain(self, source: Union[str, os.PathLike, bytes], name: str | None = None) -> tuple[Explanation, Image.Image]:
        start = time.perf_counter()
        img = open_image(source)
        name = name if name is not None else ("<bytes>" if isinstance(source, (bytes, bytearray)) else str(source))
        return self.for_image(img).explain_image(img, name, start), img


def png_names(files: Sequence[Union[str, os.PathLike]]) -> list[str]:
    """One picture name per input, ``<stem>.png``; a stem seen before gets ``-2``, ``-3``..."""
    names, seen = [], set()
    for f in files:
        stem = Path(f).stem or "image"
        name, k = f"{stem}.png", 1
        while name.lower() in seen:
            k += 1
            name = f"{stem}-{k}.png"
        seen.add(name.lower())
        names.append(name)
    return names


def explain_files(explainer, paths: Iterable[str], out_dir: Union[str, os.PathLike, None] = None,
                  model_line: str = "", force: bool = False) -> list[dict]:
    """Explain every image named by ``paths`` (files, folders, globs, as ``predict`` takes them).

    Args:
        explainer: anything with ``explain(path) -> (Explanation, image)``: :class:`Explainer`, or
            ``training.gradcam.GradCamExplainer``.
        paths: the user's PATH arguments.
        out_dir: write one picture per image here (``<stem>.png``), created if missing; None: no pictures.
        model_line: drawn on each picture under the decision.
        force: replace any file in the way; without it only pictures an earlier ``explain`` wrote (their PNG
            tag says so) are replaced, and any other file is an error raised before any work.

    Returns:
        One dict per file (:meth:`Explanation.to_dict` plus ``"png"`` and ``"replaced"``), then one per argument that yielded no
        image; a file that could not be read has ``label``/``p_fake`` None and ``error`` saying why.

    Raises:
        EdgeDetectError: the output folder cannot be written, or a picture exists (without ``force``).
    """
    from edgedetect.files import atomic_write_bytes
    from edgedetect.predict import collect_inputs

    files, problems = collect_inputs(paths)
    targets: list[Optional[Path]] = [None] * len(files)
    if out_dir is not None:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise EdgeDetectError(f"--out {out}: is a file, not a folder; give a folder for the pictures")
        targets = [out / n for n in png_names(files)]
        from edgedetect.explain_render import is_explain_picture

        # A picture an earlier run wrote is replaced (and reported); anything else is kept unless --force.
        existing = [t for t in targets if t.exists() and (t.is_dir() or not is_explain_picture(t))]
        if existing and not force:
            raise EdgeDetectError(f"--out {out}: {existing[0].name} already exists and is not a picture edgedetect "
                                  "explain wrote" + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else "") +
                                  "; pass --force to overwrite or choose another --out folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EdgeDetectError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    results = []
    for path, target in zip(files, targets):
        try:
            e, img = explainer.explain(path)
        except ImageError as exc:  # this file; a problem with the model stops the run
            results.append({"path": str(path), "label": None, "p_fake": None, "error": exc.problem,
                            "png": None})
            continue
        doc = e.to_dict()
        doc["png"], doc["replaced"] = None, target is not None and target.exists()
        if target is not None:
            from edgedetect.explain_render import png_bytes, render_explanation

            line = model_line
            if isinstance(explainer, AutoExplainer):  # name the model that decided, not the pair
                from edgedetect.predict import model_description

                line = model_description(explainer.for_image(img).clf)
            atomic_write_bytes(target, png_bytes(render_explanation(e, img, line)))
            doc["png"] = str(target)
        results.append(doc)
    results += [{"path": arg, "label": None, "p_fake": None, "error": problem, "png": None}
                for arg, problem in problems]
    return results
