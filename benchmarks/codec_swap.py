"""Does the label follow the file format? A run's val images scored as they are and re-encoded, per source and class.

A detector should call an image FAKE for what made its pixels, not for how the file was saved. The shared sets
have a codec trap (the sd15 FAKE grids are all WebP, no REAL image is), so this script takes the run's val split
(carved exactly as training carved it), saves every image again as PNG (lossless), JPEG q90 and WebP q80 at its
own size, and scores each version through the given ``.tflite`` files, as ``edgedetect predict`` does::

    python benchmarks/codec_swap.py runs/photo_npr96-all5 models/photo_npr96_int8.tflite

Prints, per model, source and class, the share called FAKE at the model's threshold and the median p_fake under
each codec; ``--json FILE`` keeps the numbers.
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

CODECS = {"as stored": None, "PNG": ("PNG", {}), "JPEG q90": ("JPEG", {"quality": 90}), "WebP q80": ("WEBP", {"quality": 80})}


def reencoded(arr: np.ndarray, codec) -> Image.Image:
    """The image as loaded (``codec`` None) or saved once more with ``codec`` = (format, options) and read back."""
    img = Image.fromarray(arr)
    if codec is None:
        return img
    buf = io.BytesIO()
    img.save(buf, codec[0], **codec[1])
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the training run folder (its config names sources, carve and seed)")
    parser.add_argument("models", nargs="+", type=Path, help=".tflite files to score")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    val = run_val(Run.open(args.run).settings)
    y, sources = np.asarray(val.y), np.asarray(val.source)
    groups = sorted({(s, int(c)) for s, c in zip(sources, y)})
    doc = {"run": str(args.run), "n": len(y), "codecs": list(CODECS), "models": {}}
    for path in args.models:
        model = Classifier(path, threads=None)
        rows = {}
        for name, codec in CODECS.items():
            p = np.empty(len(y))
            for i, arr in enumerate(val.images):
                arrays, _ = model.inputs_for(reencoded(arr, codec))
                p[i] = model.combine(model.predict(arrays))
            for s, c in groups:
                own = (sources == s) & (y == c)
                cell = rows.setdefault(f"{s} {model.metadata.labels[c]}", {"n": int(own.sum())})
                cell[name] = {"called_fake": float(np.mean(p[own] >= model.threshold)), "median_p_fake": float(np.median(p[own]))}
        doc["models"][str(path)] = {"threshold": model.threshold, "groups": rows}
        print(f"\n{path} (threshold {model.threshold:.3f}): share called FAKE (median p_fake), val split of {args.run}")
        print("\n| source class | n | " + " | ".join(CODECS) + " |")
        print("|---|---:|" + "---:|" * len(CODECS))
        for group, cell in rows.items():
            print(f"| {group} | {cell['n']} | " + " | ".join(
                f"{cell[c]['called_fake']:.2f} ({cell[c]['median_p_fake']:.2f})" for c in CODECS) + " |")
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
