"""Pictures of predictions: the images in a grid, each titled with its label, p_fake and the threshold."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_bytes, check_writable

MAX_PLOT_IMAGES = 64
PLOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
_THUMB = 256  # longest side of each shown image; the originals may be huge
_COLORS = {"FAKE": "#c62828", "REAL": "#2e7d32"}


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
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
    fig = Figure(figsize=(cols * tile, rows * (tile + 0.35) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
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
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix.lower().lstrip(".").replace("jpg", "jpeg"))
    atomic_write_bytes(out, buf.getvalue())
    return len(shown)


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
    import numpy as np

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
