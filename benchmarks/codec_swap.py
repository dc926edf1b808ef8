"""Does the label follow the file format or the size? A run's val images scored as stored, re-encoded and halved.

A detector should call an image FAKE for what made its pixels, not for how the file was saved. The shared sets
have a codec trap (the sd15 FAKE grids are all WebP, no REAL image is), so this script takes the run's val split
(carved exactly as training carved it), saves every image again as PNG (lossless), JPEG q90, JPEG q70 and WebP
q80 at its own size, and shrinks it to half its size (Lanczos; what sharing sites do, and what erases the pixel
traces a native-resolution detector reads), and scores each version through the given ``.tflite`` files, as
``edgedetect predict`` does::

    python benchmarks/codec_swap.py runs/photo_npr96-all5 models/photo_npr96_int8.tflite

Prints, per model, source and class, the share called FAKE at the model's threshold and the median p_fake under
each version; ``--json FILE`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedetect.files import atomic_write_text  # noqa: E402
from edgedetect.runtime import Classifier  # noqa: E402
from training.native_data import run_val  # noqa: E402
from training.run import Run  # noqa: E402


def saved_as(fmt: str, **options):
    """A version of an image: saved once more as ``fmt`` with ``options`` and read back."""
    def version(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, fmt, **options)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return version


def half_size(img: Image.Image) -> Image.Image:
    """The image at half its width and height (Lanczos), as a website or a messenger would shrink it."""
    return img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.LANCZOS)


VERSIONS = {"as stored": lambda img: img, "PNG": saved_as("PNG"), "JPEG q90": saved_as("JPEG", quality=90),
            "JPEG q70": saved_as("JPEG", quality=70), "WebP q80": saved_as("WEBP", quality=80), "half size": half_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the training run folder (its config names sources, carve and seed)")
    parser.add_argument("models", nargs="+", type=Path, help=".tflite files to score")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    val = run_val(Run.open(args.run).settings)
    y, sources = np.asarray(val.y), np.asarray(val.source)
    groups = sorted({(s, int(c)) for s, c in zip(sources, y)})
    doc = {"run": str(args.run), "n": len(y), "versions": list(VERSIONS), "models": {}}
    for path in args.models:
        model = Classifier(path, threads=None)
        rows = {}
        for name, version in VERSIONS.items():
            p = np.array([model.p_fake(version(Image.fromarray(arr))) for arr in val.images])
            for s, c in groups:
                own = (sources == s) & (y == c)
                cell = rows.setdefault(f"{s} {model.metadata.labels[c]}", {"n": int(own.sum())})
                cell[name] = {"called_fake": float(np.mean(p[own] >= model.threshold)), "median_p_fake": float(np.median(p[own]))}
        doc["models"][str(path)] = {"threshold": model.threshold, "groups": rows}
        print(f"\n{path} (threshold {model.threshold:.3f}): share called FAKE (median p_fake), val split of {args.run}")
        print("\n| source class | n | " + " | ".join(VERSIONS) + " |")
        print("|---|---:|" + "---:|" * len(VERSIONS))
        for group, cell in rows.items():
            print(f"| {group} | {cell['n']} | " + " | ".join(
                f"{cell[c]['called_fake']:.2f} ({cell[c]['median_p_fake']:.2f})" for c in VERSIONS) + " |")
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
