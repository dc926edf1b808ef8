"""Time ``predict`` on real-size photos against decoding the same files alone, in the same run, on one core.

    python benchmarks/photo_speed.py [--model models/photo_npr96_int8.tflite] [--n 12] [--repeats 5]

The inputs are 12-MP JPEGs (4000 x 3000, quality 92) made here from the shared sets by tiling whole photos of
``../shared/data/dreambooth.tar.gz`` side by side (no resizing), written to a temporary folder and deleted after;
nothing made from them is kept. Each repeat times, on one interpreter thread in this process:

* ``decode``: :func:`edgedetect.preprocess.open_image` on every file (read + JPEG decode + RGB), the floor;
* ``predict``: :func:`edgedetect.predict.predict_files` on the same files (read, decode, crops, invoke, combine).

It prints and writes (``benchmarks/results/photo_speed.json``) the medians over repeats, the per-image latency
and the ratio predict / decode (goal: at most 1.5), with the CPU model and its SIMD flags.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
WIDTH, HEIGHT = 4000, 3000


def cpu() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimddp", "neon")
    return {"model": model, "flags": [f for f in wanted if f in flags], "cores": os.cpu_count()}


def make_photos(folder: Path, n: int) -> list[Path]:
    """``n`` 4000 x 3000 JPEG mosaics of whole dreambooth photos (no resampling), quality 92."""
    from PIL import Image

    photos = []
    with tarfile.open(DATA / "dreambooth.tar.gz") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".jpg"):
                with Image.open(tar.extractfile(member)) as img:
                    photos.append(np.asarray(img.convert("RGB")))
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        y = 0
        while y < HEIGHT:
            x, row_h = 0, 0
            while x < WIDTH:
                p = photos[rng.integers(len(photos))]
                h, w = min(p.shape[0], HEIGHT - y), min(p.shape[1], WIDTH - x)
                canvas[y : y + h, x : x + w] = p[:h, :w]
                x, row_h = x + w, max(row_h, h)
            y += row_h
        path = folder / f"mosaic_{i:02d}.jpg"
        Image.fromarray(canvas).save(path, quality=92)
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="photo model [default: the shipped photo model]")
    parser.add_argument("--n", type=int, default=12, help="photos per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "photo_speed.json")
    args = parser.parse_args()
    if not (DATA / "dreambooth.tar.gz").is_file():
        sys.exit(f"{DATA / 'dreambooth.tar.gz'}: not there; this benchmark makes its photos from it")

    from edgedetect.files import atomic_write_text
    from edgedetect.predict import default_model_path, predict_files
    from edgedetect.preprocess import open_image
    from edgedetect.runtime import Classifier

    model = args.model or default_model_path("photo_model")
    clf = Classifier(model, threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_photos(Path(tmp), args.n)
        predict_files(clf, [str(f) for f in files[:2]])  # warm-up: interpreter allocation, page cache
        decode, predict = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for f in files:
                open_image(f)
            decode.append((time.perf_counter() - t0) / len(files))
            t0 = time.perf_counter()
            results = predict_files(clf, [str(f) for f in files])
            predict.append((time.perf_counter() - t0) / len(files))
    assert all(r["error"] is None for r in results)
    doc = {
        "date": time.strftime("%Y-%m-%d"), "cpu": cpu(), "python": platform.python_version(),
        "interpreter": f"{clf.interpreter_package} {clf.interpreter_version}", "threads": 1,
        "model": str(model), "crops_per_image": int(clf.metadata.preprocessing.get("max_crops", 1)),
        "images": f"{args.n} JPEG q92 {WIDTH}x{HEIGHT} mosaics of dreambooth photos", "repeats": args.repeats,
        "decode_ms_per_image": round(1000 * statistics.median(decode), 1),
        "predict_ms_per_image": round(1000 * statistics.median(predict), 1),
        "ratio_predict_to_decode": round(statistics.median(predict) / statistics.median(decode), 3),
        "method": "medians over repeats of wall time per image, one thread, same files, same process",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
