"""The picture of an explanation, drawn with Pillow alone (the runtime install has no plotting library).

Left: what the model judged (for a resize model, the centre square of the image); right: the same with the map
over it, red where the evidence is for FAKE and blue where it is for REAL; above: the decision as
``FAKE · p_fake 0.463 ≥ threshold 0.434``, so the label and the number can be read together; below: a colour bar
with the map's numbers and what they mean.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgedetect.explain import Explanation

RED = (198, 40, 40)
BLUE = (21, 101, 192)
GREEN = (46, 125, 50)
GREY = (68, 68, 68)
PANEL = 320  # longest side of each of the two panels, in pixels
MAX_ALPHA = 0.8  # opacity of the strongest evidence; the image stays visible under it
_UNITS = {"occlusion": "change in p_fake when the square is blurred away",
          "grad-cam": "Grad-CAM, scaled to its peak (evidence for FAKE only)",
          "crops": "p_fake of the crops; white at the threshold"}


_ASCII = {"≥": ">=", "←": "<-", "→": "->", "·": "|"}


@functools.lru_cache(maxsize=None)
def _font_file() -> str | None:
    """A TrueType font with the arrows and ≥ (DejaVu Sans, which matplotlib and most Linux systems ship), or None."""
    candidates = []
    spec = importlib.util.find_spec("matplotlib")  # its font file only; matplotlib itself is not imported
    if spec and spec.submodule_search_locations:
        candidates += [os.path.join(p, "mpl-data", "fonts", "ttf", "DejaVuSans.ttf") for p in spec.submodule_search_locations]
    candidates += ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "DejaVuSans.ttf"]
    for path in candidates:
        try:
            ImageFont.truetype(path, 12)
            return path
        except OSError:
            continue
    return None


def _font(size: int):
    path = _font_file()
    if path is not None:
        return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one small bitmap font
        return ImageFont.load_default()


def _text(s: str) -> str:
    """``s``, with ASCII for the symbols Pillow's built-in font lacks when no TrueType font was found."""
    if _font_file() is None:
        for symbol, plain in _ASCII.items():
            s = s.replace(symbol, plain)
    return s


def scale_of(e: Explanation) -> tuple[float, float]:
    """``(low, high)``: the heatmap values drawn at full blue and full red."""
    if e.method == "crops":
        return 0.0, 1.0
    finite = e.heatmap[np.isfinite(e.heatmap)]
    reach = max(float(np.max(np.abs(finite - e.neutral))) if finite.size else 0.0, 1e-3)
    return e.neutral - reach, e.neutral + reach


def _strength(e: Explanation, low: float, high: float) -> np.ndarray:
    """The heatmap as -1 (full REAL evidence) .. 0 (none) .. +1 (full FAKE evidence)."""
    h = np.nan_to_num(e.heatmap, nan=e.neutral)
    up = np.where(h > e.neutral, (h - e.neutral) / max(high - e.neutral, 1e-9), 0.0)
    down = np.where(h < e.neutral, (e.neutral - h) / max(e.neutral - low, 1e-9), 0.0)
    return np.clip(up - down, -1, 1)


def _tint(pixels: np.ndarray, s: np.ndarray) -> np.ndarray:
    alpha = (MAX_ALPHA * np.abs(s))[..., None]
    colour = np.where(s[..., None] >= 0, np.array(RED, float), np.array(BLUE, float))
    return np.clip(np.rint(pixels * (1 - alpha) + colour * alpha), 0, 255).astype(np.uint8)


def overlay(e: Explanation, shown: Image.Image) -> Image.Image:
    """``shown`` (the region of the image at display size) with the map over it."""
    low, high = scale_of(e)
    s = Image.fromarray(_strength(e, low, high).astype(np.float32), "F").resize(shown.size, Image.Resampling.BILINEAR)
    return Image.fromarray(_tint(np.asarray(shown, np.float64), np.asarray(s)))


def decision_line(e: Explanation) -> str:
    """``FAKE · p_fake 0.463 ≥ threshold 0.434``: the label and the comparison that made it."""
    sign = "≥" if e.p_fake >= e.threshold else "<"
    return f"{e.label} · p_fake {e.p_fake:.3f} {sign} threshold {e.threshold:.3f}"


def region_caption(e: Explanation) -> str:
    """What the left panel shows, e.g. ``model input: centre 512x512 of 640x512 → 32x32``."""
    w, h = e.region[2] - e.region[0], e.region[3] - e.region[1]
    text = "model input" if e.method != "crops" else f"the image, {w}x{h}"
    if (w, h) != tuple(e.image_size):
        text += f": centre {w}x{h} of {e.image_size[0]}x{e.image_size[1]}"
    size = e.params.get("input_size")
    if size and (w, h) != (size, size):
        text += f" → {size}x{size}"
    elif size:
        text += f": {size}x{size}"
    return text


def render_explanation(e: Explanation, img: Image.Image, model_line: str = "") -> Image.Image:
    """The picture of one explanation (see the module docstring).

    Args:
        e: the explanation.
        img: the decoded image it was made from.
        model_line: one line naming the model, drawn under the decision.
    """
    from edgedetect.plots import display_name

    region = img.crop(e.region)
    scale = PANEL / max(region.size)
    size = (max(1, round(region.size[0] * scale)), max(1, round(region.size[1] * scale)))
    small = max(region.size) <= 64  # show tiny inputs as crisp pixels
    shown = region.resize(size, Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS)

    pad, head, foot = 12, 84, 76
    width = max(2 * size[0] + 3 * pad, 600)
    canvas = Image.new("RGB", (width, head + size[1] + foot), "white")
    draw = ImageDraw.Draw(canvas)
    colour = RED if e.label == "FAKE" else GREEN
    draw.text((pad, 8), _text(decision_line(e)), fill=colour, font=_font(20))
    name = display_name(e.path)
    draw.text((pad, 36), _text(f"{name} · {model_line}" if model_line else name), fill=GREY, font=_font(13))
    cost = (f"{e.method}: {e.n_images} image{'s' if e.n_images != 1 else ''} in {e.n_invokes} "
            f"invoke{'s' if e.n_invokes != 1 else ''}, {1000 * e.seconds:.0f} ms")
    draw.text((pad, 56), cost, fill=GREY, font=_font(13))

    right_x = 2 * pad + size[0]
    canvas.paste(shown, (pad, head))
    canvas.paste(overlay(e, shown), (right_x, head))
    draw.rectangle((pad - 1, head - 1, pad + size[0], head + size[1]), outline=(170, 170, 170))
    draw.rectangle((right_x - 1, head - 1, right_x + size[0], head + size[1]), outline=colour)
    small_font = _font(12)
    y = head + size[1] + 6
    draw.text((pad, y), _text(region_caption(e)), fill=GREY, font=small_font)
    draw.text((right_x, y), "where the evidence is", fill=GREY, font=small_font)

    # Colour bar: blue (evidence for REAL) .. white .. red (evidence for FAKE), with its end values.
    low, high = scale_of(e)
    bar_w, bar_y = width - 2 * pad, y + 24
    t = np.linspace(-1, 1, bar_w) if e.method != "grad-cam" else np.linspace(0, 1, bar_w)
    bar = _tint(np.full((1, bar_w, 3), 255.0), t[None])
    canvas.paste(Image.fromarray(np.repeat(bar, 12, axis=0)), (pad, bar_y))
    if e.method == "crops":
        left, right = f"← REAL  p_fake {low:.2f}", f"p_fake {high:.2f}  FAKE →"
    elif e.method == "grad-cam":
        left, right = "0 (none)", f"{high:.3g}  FAKE →"
    else:
        left, right = f"← REAL  {low:+.3f}", f"{high:+.3f}  FAKE →"
    left, right = _text(left), _text(right)
    draw.text((pad, bar_y + 15), left, fill=BLUE if e.method != "grad-cam" else GREY, font=small_font)
    draw.text((width - pad - draw.textlength(right, font=small_font), bar_y + 15), right, fill=RED, font=small_font)
    unit = _UNITS[e.method]
    draw.text(((width - draw.textlength(unit, font=small_font)) / 2, bar_y + 15), unit, fill=GREY, font=small_font)
    return canvas


SOFTWARE_TAG = "edgedetect explain"  # in each picture's PNG text, so a later run knows the file is its own


def png_bytes(picture: Image.Image) -> bytes:
    """The picture as PNG bytes, tagged ``Software: edgedetect explain <version>``."""
    from PIL.PngImagePlugin import PngInfo

    from edgedetect import __version__

    info = PngInfo()
    info.add_text("Software", f"{SOFTWARE_TAG} {__version__}")
    buf = io.BytesIO()
    picture.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def is_explain_picture(path) -> bool:
    """Whether ``path`` is a PNG that ``edgedetect explain`` wrote (its text tag), reading only the header."""
    try:
        with Image.open(path) as img:
            return img.format == "PNG" and str(img.text.get("Software", "")).startswith(SOFTWARE_TAG)
    except (OSError, ValueError, SyntaxError):
        return False
