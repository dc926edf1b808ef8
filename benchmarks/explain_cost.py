"""What `edgedetect explain` costs: images run, invokes and milliseconds per explained image, per shipped model.

Method: each model explains the five sample photos in imgs/real (decode, centre-crop and resize, the batched
occlusion invoke, the map; not the picture) after one warm-up image; every photo is explained ``--runs`` times and
the median and p90 of all the times (time.perf_counter) are reported, with the thread count, host and versions.

    python benchmarks/explain_cost.py [--threads 2] [--runs 5] [--json benchmarks/results/explain_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedetect.bench import cpu_model, shipped_models  # noqa: E402
from edgedetect.explain import Explainer  # noqa: E402
from edgedetect.files import atomic_write_text  # noqa: E402
from edgedetect.runtime import Classifier  # noqa: E402


def measure(model: Path, images: list[Path], threads: int, runs: int) -> dict:
    clf = Classifier(model, threads=threads)
    explainer = Explainer(clf)
    explainer.explain(images[0])  # warm-up: the interpreter allocates the batch once
    times, last = [], None
    for _ in range(runs):
        for path in images:
            last, _ = explainer.explain(path)
            times.append(1000 * last.seconds)
    return {"model": model.name, "precision": clf.metadata.precision, "input_size": clf.input_size,
            "images_run": last.n_images, "invokes": last.n_invokes, "ms_median": float(np.median(times)),
            "ms_p90": float(np.percentile(times, 90)), "n": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    images = sorted((REPO / "imgs" / "real").glob("*.jpg"))
    rows = [measure(m, images, args.threads, args.runs) for m in shipped_models()]
    clf = Classifier(shipped_models()[0], threads=1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other work on the cores slows every figure
    doc = {"method": __doc__.split("\n\n")[1].replace("\n", " "), "threads": args.threads, "runs": args.runs,
           "host": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_1min": load,
                    "python": platform.python_version(),
                    "interpreter": f"{clf.interpreter_package} {clf.interpreter_version}"},
           "rows": rows}
    print(f"| model | images run | invokes | ms/image median | p90 |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['images_run']} | {r['invokes']} | {r['ms_median']:.1f} | {r['ms_p90']:.1f} |")
    print(f"{doc['host']['cpu']}, {os.cpu_count()} cores (load average {load}), {args.threads} threads, "
          f"{doc['host']['interpreter']}")
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
