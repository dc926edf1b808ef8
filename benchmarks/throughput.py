"""End-to-end throughput: edgedetect's pipeline vs the way earlier projects ran a .tflite, in the same run.

Both read the JPEG files of a folder, decode, preprocess and classify every image:

* **edgedetect**: what ``edgedetect bench`` measures (:class:`edgedetect.bench.WorkerPool`): one worker process
  per core, each with a single-threaded LiteRT interpreter at batch 256, decoding with the runtime's
  :func:`edgedetect.preprocess.load_image`.
* **earlier way**: full TensorFlow's ``tf.lite.Interpreter`` created once (default threads), then per image
  ``PIL.Image.open(path).convert("RGB").resize((S, S))``, quantize if the input is integer, ``set_tensor``,
  ``invoke``, ``get_tensor``, in one process.

Each is timed with ``time.perf_counter`` over the whole folder, ``--repeats`` times, alternating so that other
load on the machine hits both alike; the medians and their ratio are reported with host, versions and date.
Worker start-up and model loading are not timed for either. Needs the [train] extra (TensorFlow) for the
earlier way.

    python benchmarks/throughput.py                      # shipped default model, ../shared/data/cifake-test.tar.gz
    python benchmarks/throughput.py --model models/x_int8.tflite --data /tmp/cifake-test --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifake-test.tar.gz"


def extracted(data: Path, tmp: Path) -> Path:
    """``data`` itself when it is a folder; else the archive extracted into ``tmp``."""
    if data.is_dir():
        return data
    if not data.is_file():
        sys.exit(f"error: {data}: not found; pass --data with the CIFAKE test folder or tarball")
    with tarfile.open(data) as tar:
        tar.extractall(tmp, filter="data")
    return tmp


def legacy_pass(interp, files: list[str]) -> tuple[np.ndarray, float]:
    """One image at a time through a full-TensorFlow interpreter, as earlier projects did; ``(p_fake, seconds)``."""
    from PIL import Image

    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    size = int(inp["shape"][1])
    dtype = inp["dtype"]
    scale, zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    p = np.empty(len(files))
    t = time.perf_counter()
    for i, f in enumerate(files):
        img = Image.open(f).convert("RGB").resize((size, size))
        x = np.expand_dims(np.asarray(img, dtype=np.float32), 0)
        if dtype != np.float32:
            x = np.clip(np.rint(x / scale + zero), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float64)
        p[i] = ((y - out_zero) * out_scale if out_scale else y).item()
    return p, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="the .tflite model [default: the shipped default model]")
    ap.add_argument("--data", default=str(DEFAULT_DATA),
                    help="folder of images, or the tarball to extract [%(default)s]")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes of each method [%(default)s]")
    ap.add_argument("--workers", type=int, default=None, help="edgedetect worker processes [all cores]")
    ap.add_argument("--out", help="also write the JSON document to this file")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    from edgedetect.bench import WorkerPool, host_info, load_image_set, usable_cores
    from edgedetect.errors import EdgeDetectError
    from edgedetect.files import atomic_write_text
    from edgedetect.metrics import binary_metrics
    from edgedetect.runtime import Classifier

    try:
        if args.model:
            model = Path(args.model)
        else:
            from edgedetect.predict import default_model_path

            model = default_model_path()
        clf = Classifier(model, threads=1)
    except EdgeDetectError as e:
        sys.exit(f"error: {e}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    workers = args.workers or usable_cores()
    with tempfile.TemporaryDirectory(prefix="edgedetect-throughput-") as tmp:
        folder = extracted(Path(args.data), Path(tmp))
        images = load_image_set(folder)
        files = images.items  # absolute paths, sorted by relative path
        interp = tf.lite.Interpreter(model_path=str(model))
        interp.allocate_tensors()
        ours, legacy = [], []
        with WorkerPool(workers, threads=1) as pool:
            pool.run(model, load_image_set(folder, limit=512))  # start-up, model loading and page cache: untimed
            legacy_pass(interp, files[:512])
            for _ in range(args.repeats):
                p_ours, errors, secs = pool.run(model, images)
                ours.append(int(np.isfinite(p_ours).sum()) / secs)
                p_legacy, secs = legacy_pass(interp, files)
                legacy.append(len(files) / secs)
                print(f"edgedetect {ours[-1]:,.0f} img/s, earlier way {legacy[-1]:,.0f} img/s", file=sys.stderr)

    labelled = images.labels >= 0
    ok = np.isfinite(p_ours)
    acc = {name: binary_metrics(images.labels[labelled & ok], p[labelled & ok], clf.threshold)["accuracy"]
           if (labelled & ok).any() else None for name, p in (("edgedetect", p_ours), ("earlier", p_legacy))}
    med_ours, med_legacy = statistics.median(ours), statistics.median(legacy)
    doc = {
        "model": str(model),
        "precision": clf.metadata.precision,
        "data": str(args.data),
        "n_images": len(files),
        "repeats": args.repeats,
        "host": {**host_info(threads=1, workers=workers, threads_per_worker=1), "tensorflow": tf.__version__},
        "edgedetect": {
            "method": f"{workers} worker processes x 1 LiteRT thread, batch {pool.batch_size}, "
                      "read + load_image + invoke",
            "throughput_ips_median": med_ours, "throughput_ips_runs": ours, "accuracy": acc["edgedetect"],
            "unreadable": len(errors),
        },
        "earlier": {
            "method": "tf.lite.Interpreter (full TensorFlow, default threads), created once; per image: PIL open, "
                      "convert RGB, resize, set_tensor, invoke, get_tensor",
            "throughput_ips_median": med_legacy, "throughput_ips_runs": legacy, "accuracy": acc["earlier"],
        },
        "ratio": med_ours / med_legacy,
        "max_abs_dp_between_methods": float(np.max(np.abs(p_ours[ok] - p_legacy[ok]))) if ok.any() else None,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    text = json.dumps(doc, indent=1)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text)
    host = doc["host"]
    print(f"\n| method | img/s (median of {args.repeats}) | accuracy |\n|---|---:|---:|")
    ours_name = f"edgedetect bench ({workers} workers, batch {pool.batch_size}, {host['interpreter']})"
    for key, name in (("edgedetect", ours_name),
                      ("earlier", f"tf.lite.Interpreter, one image at a time (tensorflow {tf.__version__})")):
        a = doc[key]["accuracy"]
        print(f"| {name} | {doc[key]['throughput_ips_median']:,.0f} | {'-' if a is None else f'{a:.4f}'} |")
    print(f"| **ratio** | **{doc['ratio']:.1f}x** | |")
    print(f"\n{Path(model).name}, {len(files):,} images of {args.data}; {host['cpu']}, {host['usable_cores']} cores, "
          f"load average {host['load_average']}; python {host['python']}, numpy {host['numpy']}, "
          f"pillow {host['pillow']}; {host['date']}")


if __name__ == "__main__":  # required: the worker processes are spawned and re-import this file
    main()
