"""Every picture edgedetect draws, and the one way it saves one (:func:`save_figure`).

Predictions in a grid (``predict --plot``), an evaluation's ROC curve, confusion matrix and worst mistakes
(``evaluate --plots``). Figures are matplotlib ``Figure`` objects with an Agg canvas (no pyplot state).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_bytes, check_writable

MAX_PLOT_IMAGES = 64
PLOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
_THUMB = 256  # longest side of each shown image; the originals may be huge
_COLORS = {"FAKE": "#c62828", "REAL": "#2e7d32"}


def new_figure(figsize: tuple[float, float], dpi: int):
    """A matplotlib Figure with its own Agg canvas (drawable and savable without pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (``.png`` when it names none), at
    ``dpi`` [default: the figure's]."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg") or "png", dpi=dpi or "figure")
    atomic_write_bytes(path, buf.getvalue())
    return path


def require_matplotlib(option: str = "--plot") -> None:
    """Raise EdgeDetectError (one line: how to get it) when matplotlib, the ``[plot]`` extra, is not installed.

    The base install leaves it out: it and fontTools were over a fifth of the runtime's site-packages.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EdgeDetectError(f'{option} needs matplotlib: pip install "edgedetect[plot]"') from None


def check_plot_path(path: Path, force: bool = False) -> None:
    """Raise EdgeDetectError before any work when matplotlib is missing, or ``path`` cannot be written, or exists
    (without ``force``)."""
    require_matplotlib("--plot")
    check_writable(path, force, option="--plot", suffixes=PLOT_SUFFIXES)


def display_name(path: str | os.PathLike) -> str:
    """The file name of ``path`` as text to draw: a name that is not valid UTF-8 holds surrogates, which the font
    renderer rejects, so its undecodable bytes are shown escaped (``caf\\xe9.jpg``)."""
    return os.fsencode(Path(path).name).decode("utf-8", "backslashreplace")


def tile_title(label: str, p_fake: float, threshold: float | None = None) -> str:
    """``FAKE · p_fake 0.463 ≥ 0.434``: the label with the comparison that made it, so the two read together.

    (A "46.3%" beside a FAKE label reads as "46% fake, yet FAKE"; p_fake against the threshold does not.)
    """
    if threshold is None:
        return f"{label} · p_fake {p_fake:.3f}"
    return f"{label} · p_fake {p_fake:.3f} {'≥' if p_fake >= threshold else '<'} {threshold:.3f}"


def plot_predictions(results: list[dict], out: str | os.PathLike, title: str = "",
                     max_images: int = MAX_PLOT_IMAGES, force: bool = False, threshold: float | None = None) -> int:
    """Draw the classified images of ``results`` (dicts from :func:`edgedetect.predict.predict_files`) in a grid.

    Each image is titled with its label (red FAKE, green REAL), its p_fake and the ``threshold`` it was compared
    with (:func:`tile_title`), and its file name. At most ``max_images`` are drawn (the first ones); the figure title says when some were left out.
    The picture is written atomically; its type follows the suffix of ``out``; an existing file is replaced only
    with ``force``.

    Returns:
        The number of images drawn.
    """
    from edgedetect.preprocess import open_image

    out = Path(out)
    check_plot_path(out, force)
    shown = []
    for r in results:
        if r["label"] is None:
            continue
        try:
            img = open_image(r["path"])
        except EdgeDetectError:  # changed since it was classified; leave it out of the picture
            continue
        img.thumbnail((_THUMB, _THUMB))
        shown.append((r, np.asarray(img)))
        if len(shown) == max_images:
            break
    classified = sum(r["label"] is not None for r in results)

    n = max(len(shown), 1)
    cols = min(8, math.ceil(math.sqrt(n)) if n <= 16 else 8)
    rows = math.ceil(n / cols)
    tile = 2.2 if n > 1 else 4.0
    fig = new_figure((cols * tile, rows * (tile + 0.35) + 0.6), 100)
    heading = title
    if classified > len(shown):
        heading += f"\nshowing the first {len(shown)} of {classified} classified images"
    if heading:
        fig.suptitle(heading.strip(), fontsize=10)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if i >= len(shown):
            if not shown and i == 0:
                ax.text(0.5, 0.5, "no image could be classified", ha="center", va="center")
            continue
        r, arr = shown[i]
        small = max(arr.shape[:2]) <= 64  # show tiny images (CIFAKE is 32x32) as crisp pixels
        ax.imshow(arr, interpolation="nearest" if small else "antialiased")
        name = display_name(r["path"])
        if len(name) > 24:
            name = name[:10] + "…" + name[-12:]
        color = _COLORS[r["label"]]
        ax.set_title(tile_title(r["label"], r["p_fake"], r.get("threshold", threshold) if threshold is None else threshold), color=color, fontsize=9 if n > 1 else 11,
                     fontweight="bold", pad=3)
        ax.text(0.5, -0.02, name, transform=ax.transAxes, ha="center", va="top", fontsize=7, color="#444444")
        ax.axis("on")  # a frame in the label's colour
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(3)
    fig.tight_layout()
    save_figure(fig, out)
    return len(shown)


def roc_figure(y: np.ndarray, p_fake: np.ndarray, report: dict, title: str):
    """The ROC curve with the operating point of ``report`` (its threshold, roc_auc and confusion_matrix)."""
    from edgedetect.metrics import roc_curve

    t = report["threshold"]
    fig = new_figure((5.2, 5.2), 110)
    ax = fig.add_subplot()
    if report["roc_auc"] is not None:
        fpr, tpr, _ = roc_curve(y, p_fake)
        ax.plot(fpr, tpr, lw=2, label=f"ROC, AUC = {report['roc_auc']:.4f}")
        (tn, fp), (fn, tp) = report["confusion_matrix"]
        ax.plot(fp / (fp + tn), tp / (tp + fn), "o", color="#c62828", label=f"threshold {t:.3g}")
    else:
        ax.text(0.5, 0.5, "only one class present:\nno ROC curve", ha="center", va="center")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (REAL called FAKE)",
           ylabel="true positive rate (FAKE caught)", title=title)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(report: dict, title: str):
    """The confusion matrix of ``report``, counts and row shares, titled with its threshold, accuracy and F1."""
    from edgedetect import LABELS

    t = report["threshold"]
    fig = new_figure((4.8, 4.3), 110)
    ax = fig.add_subplot()
    cm = np.asarray(report["confusion_matrix"])
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{cm[i, j]}\n{rows[i, j]:.1%}", ha="center", va="center", fontsize=12,
                    color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks([0, 1], [f"predicted {LABELS[0]}", f"predicted {LABELS[1]}"])
    ax.set_yticks([0, 1], [f"true {LABELS[0]}", f"true {LABELS[1]}"])
    ax.set_title(f"{title}\nthreshold {t:.3g}: accuracy {report['accuracy']:.2%}, F1 {report['f1']:.4f}", fontsize=9)
    fig.tight_layout()
    return fig


def mistakes_figure(x: np.ndarray, y: np.ndarray, p_fake: np.ndarray, paths: list[str], idx: np.ndarray,
                    threshold: float, title: str):
    """The images ``idx`` (the worst mistakes, most confident first) as the model saw them, framed in red."""
    from edgedetect import LABELS

    n_wrong = int(((p_fake >= threshold) != (y == 1)).sum())
    cols = max(1, min(4, len(idx)))
    rows = max(1, math.ceil(len(idx) / cols))
    fig = new_figure((max(cols * 2.4, 6.0), rows * 2.75 + 0.8), 110)  # wide enough for the title
    what = (f"the {len(idx)} most confident of {n_wrong} mistakes" if n_wrong else "no mistakes")
    fig.suptitle(f"{title}\n{what} at threshold {threshold:.3g}; pixels as the model saw them", fontsize=9)
    if not len(idx):
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "every image classified correctly", ha="center", va="center", fontsize=12)
    for k, i in enumerate(idx):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(x[i], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("#c62828")
            spine.set_linewidth(2.5)
        ax.set_title(f"true {LABELS[y[i]]}, p_fake {p_fake[i]:.3f}", fontsize=9, pad=3)
        name = display_name(paths[i])
        ax.text(0.5, -0.03, name if len(name) <= 26 else name[:11] + "…" + name[-13:], transform=ax.transAxes,
                ha="center", va="top", fontsize=7, color="#444444")
    fig.tight_layout()
    return fig


def place_labels(anchors, sizes, radii, bounds, obstacles=(), gap: float = 4.0) -> list[tuple[float, float]]:
    """Offsets that put each label near its point without covering another label, a bubble or an obstacle.

    Greedy: each label in turn takes the best of 8 directions x 4 distances around its point, scored by the area
    it would overlap (placed labels, other bubbles, ``obstacles`` such as the legend, the area outside
    ``bounds``) and then by distance. Everything is in display pixels (y up, as matplotlib's display space).

    Args:
        anchors: ``(x, y)`` of each point.
        sizes: ``(width, height)`` of each label's text box.
        radii: each point's bubble radius.
        bounds: ``(x0, y0, x1, y1)`` the labels must stay inside (the axes).
        obstacles: more ``(x0, y0, x1, y1)`` boxes to keep clear of.
        gap: space between a bubble's edge and its label.

    Returns:
        ``(dx, dy)`` per label: the offset of the label's centre from its point.
    """
    def overlap(a, b) -> float:
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    bubbles = [(x - r, y - r, x + r, y + r) for (x, y), r in zip(anchors, radii)]
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    placed: list[tuple[float, float, float, float]] = []
    offsets = []
    for i, ((x, y), (w, h), r) in enumerate(zip(anchors, sizes, radii)):
        best = None
        for k, step in enumerate((0.0, 18.0, 40.0, 70.0)):
            for dx, dy in directions:
                norm = float(np.hypot(dx, dy))
                ux, uy = dx / norm, dy / norm
                # Centre so that the box's near side sits `r + gap + step` from the point along the direction.
                cx = x + ux * (r + gap + step) + dx * w / 2
                cy = y + uy * (r + gap + step) + dy * h / 2
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                inside = overlap(box, bounds)
                cost = 10 * (w * h - inside)
                cost += 10 * sum(overlap(box, p) for p in placed)
                cost += 3 * sum(overlap(box, b) for j, b in enumerate(bubbles) if j != i)
                cost += 10 * sum(overlap(box, o) for o in obstacles)
                key = (round(cost, 1), k, directions.index((dx, dy)))
                if best is None or key < best[0]:
                    best = (key, box, (cx - x, cy - y))
        placed.append(best[1])
        offsets.append(best[2])
    return offsets
