"""Score a model on a labelled dataset: metrics at a stated threshold, and pictures of where it goes wrong.

A ``.tflite`` model runs through :class:`edgedetect.runtime.Classifier` (the interpreter, as ``predict`` does;
no TensorFlow); a ``.keras`` model through the scorer passed in (``training.keras_model.KerasScorer``: this
runtime module never imports training code or Keras). Both see the arrays :func:`edgedetect.data.load_dataset`
decodes with the runtime's preprocessing.

The decision threshold is resolved by :func:`edgedetect.resolve.resolve_threshold`, in order: the one given; one
chosen on the dataset's ``val`` split (never on the split being evaluated, so never on test); the model's own (the
.tflite metadata sidecar, or ``metrics.json`` of the training run a .keras sits in); 0.5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgedetect import LABELS
from edgedetect.errors import EdgeDetectError
from edgedetect.files import check_writable
from edgedetect.resolve import resolve_threshold
from edgedetect.sampling import limit_sample

THRESHOLD_METHODS = ("youden", "f1")
_METHOD_NAMES = {"youden": "Youden's J (max TPR - FPR)", "f1": "best F1"}
MAX_MISTAKES = 16  # images in the worst-mistakes grid
_VAL_IS_EVALUATED = ("--optimize-threshold chooses the threshold on the val split, which is the split being evaluated; "
                     "evaluate --split test, or pass a fixed --threshold")
PLOT_FILES = {"roc": "roc.png", "confusion_matrix": "confusion_matrix.png", "mistakes": "worst_mistakes.png"}


@dataclass
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        model: a ``.keras`` or ``.tflite`` file.
        data: a dataset folder or archive (see :mod:`edgedetect.data`).
        split: the split scored: train, val or test.
        threshold: a fixed threshold (None: the model's own, or 0.5).
        optimize_threshold: choose the threshold on the val split: "youden" or "f1" (None: don't).
        plots: folder for the ROC curve, confusion matrix and worst-mistakes pictures (None: no pictures).
        force: replace pictures already in ``plots`` (without it, an existing one is an error before any work).
        limit: score at most this many images of each split used (:func:`edgedetect.sampling.limit_sample`: a
            seeded random subset, each class keeping its share).
        val_fraction: share of train carved into val when the data has none. None: the training run's when the
            data is the model's own training data (so the carve is the same and no training image lands in
            val), else 0.1.
        seed: seed of that carve (None: likewise the run's, else 0).
        threads: interpreter threads for a .tflite (None: all cores).
    """

    model: str
    data: str
    split: str = "test"
    threshold: float | None = None
    optimize_threshold: str | None = None
    plots: str | None = None
    force: bool = False
    limit: int | None = None
    val_fraction: float | None = None
    seed: int | None = None
    threads: int | None = None


@dataclass
class Evaluation:
    """The report (JSON-able dict) and the arrays behind it."""

    report: dict
    x: np.ndarray  # uint8 images of the evaluated split
    y: np.ndarray  # labels, 1 = FAKE
    p_fake: np.ndarray
    paths: list[str]


def check_model_file(model: Path) -> None:
    """Raise EdgeDetectError unless ``model`` is an existing regular file."""
    if not model.exists() or model.is_dir():
        raise EdgeDetectError(f"{model}: model not found" + (" (it is a folder)" if model.is_dir() else ""))
    if not model.is_file():
        raise EdgeDetectError(f"{model}: not a regular file (a pipe, socket or device); pass a model file")


class TFLiteScorer:
    """A .tflite model run by the interpreter: ``predict(uint8 NHWC) -> p_fake``, its input size and its own threshold.

    A scorer is any object with ``kind``, ``input_size``, ``predict``, ``model_threshold`` (``(threshold, where it
    comes from)`` or None) and ``training`` (the training run's settings, where known); the Keras one is
    ``training.keras_model.KerasScorer``, which the ``evaluate`` command picks for ``.keras`` files.
    """

    kind = "tflite"

    def __init__(self, model: Path, threads: int | None):
        check_model_file(model)
        suffix = model.suffix.lower()
        if suffix == ".keras":
            raise EdgeDetectError(f"{model}: a .keras model is scored through Keras: pass "
                                  "scorer=training.keras_model.KerasScorer(model) (`edgedetect evaluate` does)")
        if suffix != ".tflite":
            raise EdgeDetectError(f"{model}: unsupported model type {suffix or '(no suffix)'!r}; "
                                  "evaluate takes a .keras (from `edgedetect train`) or a .tflite file")
        from edgedetect.resolve import model_threshold
        from edgedetect.runtime import Classifier

        clf = Classifier(model, threads=threads)
        if clf.mode == "crops":  # evaluate scores whole images resized to the input size: not what this model sees
            raise EdgeDetectError(f"{model}: a native-resolution model (crops of the image at its own size); "
                                  "evaluate scores whole images resized to the input size, which would be a wrong "
                                  "answer for it. Score it with `edgedetect predict DIR --json` or "
                                  "benchmarks/generalisation.py (per source, fp32 and int8)")
        self.input_size, self.predict = clf.input_size, clf.predict
        self.model_threshold = model_threshold(clf.metadata, clf.metadata_file)
        self.training: dict = {}  # the training run's settings (data, val_fraction, seed), where known
        if clf.metadata_file is not None:
            settings = clf.metadata.training.get("settings") if isinstance(clf.metadata.training, dict) else None
            self.training = settings if isinstance(settings, dict) else {}


def _subset(split, n: int | None):
    if n is None or n >= len(split):
        return split
    return split.subset(limit_sample(len(split), n, split.y))


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, TypeError):
        return False


def _carve(cfg: EvalConfig, training: dict) -> tuple[float, int]:
    """``(val_fraction, seed)``: as configured, else the training run's on its own data, else 0.1 and 0."""
    run = training if _same_file(training.get("data"), cfg.data) else {}
    fraction = cfg.val_fraction if cfg.val_fraction is not None else run.get("val_fraction", 0.1)
    seed = cfg.seed if cfg.seed is not None else run.get("seed", 0)
    return float(fraction), int(seed)


def choose_threshold(dataset, split: str, method: str, predict: Callable, limit: int | None = None) -> tuple[float, str]:
    """Threshold chosen by ``method`` on ``dataset``'s val split; ``(threshold, how it was chosen)``.

    Raises:
        EdgeDetectError: unknown method, no val split, or ``split`` is val itself.
    """
    if method not in THRESHOLD_METHODS:
        raise EdgeDetectError(f"--optimize-threshold {method}: unknown method; valid: {', '.join(THRESHOLD_METHODS)}")
    if split == "val":
        raise EdgeDetectError(_VAL_IS_EVALUATED)
    if "val" not in dataset.splits:
        raise EdgeDetectError(f"{dataset.source}: no val split to choose a threshold on (found: "
                              f"{', '.join(dataset.splits)}; a test split is never used for that). Drop "
                              "--optimize-threshold to use the model's own threshold, pass --threshold, or use data "
                              "with a train or val split")
    from edgedetect.metrics import optimal_threshold

    val = _subset(dataset.split("val"), limit)
    if len(np.unique(val.y)) < 2:
        raise EdgeDetectError(f"the val split used to choose the threshold holds one class only ({len(val)} images); "
                              "raise --limit or pass a fixed --threshold")
    threshold = optimal_threshold(val.y, predict(val.x), method)
    carved = " (carved from train)" if dataset.val_carved else ""
    return threshold, f"{_METHOD_NAMES[method]} on the val split{carved}, {len(val)} images"


def check_options(cfg: EvalConfig) -> None:
    """Raise EdgeDetectError for conflicting threshold options or an unusable ``--plots`` folder, before any work."""
    if cfg.threshold is not None and cfg.optimize_threshold is not None:
        raise EdgeDetectError("--threshold and --optimize-threshold both given; pass one of them")
    if cfg.threshold is not None and not 0.0 <= cfg.threshold <= 1.0:
        raise EdgeDetectError(f"--threshold {cfg.threshold}: must be between 0 and 1 (a p_fake value)")
    if cfg.optimize_threshold is not None and cfg.optimize_threshold not in THRESHOLD_METHODS:
        raise EdgeDetectError(f"--optimize-threshold {cfg.optimize_threshold}: unknown method; "
                              f"valid: {', '.join(THRESHOLD_METHODS)}")
    if cfg.optimize_threshold is not None and cfg.split == "val":
        raise EdgeDetectError(_VAL_IS_EVALUATED)
    if cfg.plots:
        _check_plot_dir(Path(cfg.plots), cfg.force)


def evaluate(cfg: EvalConfig, progress: bool = False, scorer=None) -> Evaluation:
    """Score ``cfg.model`` on ``cfg.split`` of ``cfg.data``; writes the pictures when ``cfg.plots`` is set.

    Args:
        scorer: the loaded model (see :class:`TFLiteScorer`); None: a :class:`TFLiteScorer` of ``cfg.model``.
            A ``.keras`` model needs ``training.keras_model.KerasScorer(cfg.model)``.

    Returns:
        An :class:`Evaluation` whose ``report`` has accuracy, precision, recall, f1, balanced_accuracy, roc_auc,
        confusion_matrix (rows true REAL/FAKE, columns predicted), threshold, threshold_source, n, model,
        data, split (and plots: the written files; unreadable and errors ``[{"path", "error"}]``: the files of
        the splits used that could not be read, so were left out).

    Raises:
        EdgeDetectError: missing/unsupported model, unusable data or split, conflicting threshold options.
    """
    from edgedetect.data import load_dataset
    from edgedetect.metrics import binary_metrics

    check_options(cfg)
    plots = Path(cfg.plots) if cfg.plots else None
    if scorer is None:
        scorer = TFLiteScorer(Path(cfg.model), cfg.threads)
    val_fraction, seed = _carve(cfg, scorer.training)
    dataset = load_dataset(cfg.data, scorer.input_size, val_fraction=val_fraction, seed=seed, progress=progress)
    split = _subset(dataset.split(cfg.split), cfg.limit)

    chosen = None
    if cfg.threshold is None and cfg.optimize_threshold is not None:
        chosen = choose_threshold(dataset, cfg.split, cfg.optimize_threshold, scorer.predict, cfg.limit)
    threshold, source = resolve_threshold(cfg.threshold, chosen, scorer.model_threshold)

    p_fake = scorer.predict(split.x)
    report = {"model": str(cfg.model), "data": str(cfg.data), "split": cfg.split,
              **binary_metrics(split.y, p_fake, threshold), "threshold_source": source}
    if len(split) < len(dataset.split(cfg.split)):
        report["limit"] = f"{len(split)} of {len(dataset.split(cfg.split))} images (seeded random subset)"
    errors = _unreadable(dataset, cfg)
    if errors:
        report["unreadable"] = len(errors)
        report["errors"] = errors
    result = Evaluation(report, split.x, np.asarray(split.y, int), p_fake, list(split.paths))
    report["worst_mistakes"] = [{"path": result.paths[i], "label": LABELS[result.y[i]], "p_fake": float(p_fake[i])}
                                for i in worst_mistakes(result.y, p_fake, threshold)]
    if plots is not None:
        try:
            report["plots"] = [str(p) for p in write_plots(result, plots, cfg.force)]
        except EdgeDetectError as e:  # a full disk costs the pictures, not the figures: the caller prints both
            report["plots"], report["plot_error"] = [], str(e)
    return result


def _unreadable(dataset, cfg: EvalConfig) -> list[dict]:
    """``[{"path", "error"}]`` for the unreadable files of the splits used: the evaluated one, and val if a
    threshold is chosen on it (train too when val is carved from it, as those files might have been in val)."""
    from edgedetect.layout import NO_SPLIT, classify

    used = {cfg.split}
    if cfg.optimize_threshold is not None:
        used |= {"val", "train"} if dataset.val_carved else {"val"}
    return [{"path": path, "error": problem} for path, problem in dataset.unreadable
            if (classify(path)[0] or NO_SPLIT) in used]


def worst_mistakes(y: np.ndarray, p_fake: np.ndarray, threshold: float, k: int = MAX_MISTAKES) -> np.ndarray:
    """Indexes of up to ``k`` wrong predictions, most confidently wrong first (by p of the wrong class)."""
    y = np.asarray(y).astype(int)
    p_fake = np.asarray(p_fake, dtype=np.float64)
    wrong = np.flatnonzero((p_fake >= threshold) != (y == 1))
    confidence = np.where(y[wrong] == 1, 1.0 - p_fake[wrong], p_fake[wrong])
    return wrong[np.argsort(-confidence, kind="stable")[:k]]


def _check_plot_dir(path: Path, force: bool = False) -> None:
    from edgedetect.plots import require_matplotlib

    require_matplotlib("--plots")
    if path.exists() and not path.is_dir():
        raise EdgeDetectError(f"--plots {path}: is a file; give a folder (it is created if missing)")
    parent = path if path.exists() else path.parent
    if not parent.exists():
        raise EdgeDetectError(f"--plots {path}: its parent folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise EdgeDetectError(f"--plots {path}: folder {parent} is not writable")
    if path.is_dir():
        for name in PLOT_FILES.values():
            check_writable(path / name, force)


def write_plots(result: Evaluation, folder: str | os.PathLike, force: bool = False) -> list[Path]:
    """Write ``roc.png``, ``confusion_matrix.png`` and ``worst_mistakes.png`` into ``folder`` (atomically each).

    Raises:
        EdgeDetectError: ``folder`` cannot be written, or already holds one of them (without ``force``).
    """
    from edgedetect import plots as draw

    folder = Path(folder)
    _check_plot_dir(folder, force)
    folder.mkdir(exist_ok=True)
    r = result.report
    t = r["threshold"]
    title = f"{Path(r['model']).name} on {Path(r['data']).name} [{r['split']}], n={r['n']}"
    idx = worst_mistakes(result.y, result.p_fake, t)
    figures = {"roc": draw.roc_figure(result.y, result.p_fake, r, title),
               "confusion_matrix": draw.confusion_figure(r, title),
               "mistakes": draw.mistakes_figure(result.x, result.y, result.p_fake, result.paths, idx, t, title)}
    return [draw.save_figure(fig, folder / PLOT_FILES[name]) for name, fig in figures.items()]
