"""Pictures of predictions: the images in a grid, each titled with its label and confidence."""

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


def plot_predictions(results: list[dict], out: str | os.PathLike, title: str = "",
                     max_images: int = MAX_PLOT_IMAGES, force: bool = False) -> int:
    """Draw the classified images of ``results`` (dicts from :func:`edgedetect.predict.predict_files`) in a grid.

    Each image is titled with its label and the confidence in that label (red FAKE, green REAL) and its file
    name. At most ``max_images`` are drawn (the first ones); the figure title says when some were left out.
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
        confidence = r["p_fake"] if r["label"] == "FAKE" else 1.0 - r["p_fake"]
        small = max(arr.shape[:2]) <= 64  # show tiny images (CIFAKE is 32x32) as crisp pixels
        ax.imshow(arr, interpolation="nearest" if small else "antialiased")
        name = display_name(r["path"])
        if len(name) > 24:
            name = name[:10] + "…" + name[-12:]
        color = _COLORS[r["label"]]
        ax.set_title(f"{r['label']} {confidence:.1%}", color=color, fontsize=10, fontweight="bold", pad=3)
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
