"""A native-resolution run's val split through its .tflite files: per source and class, fp32 against int8.

The val split is carved exactly as training carved it (the run's sources, ``val_fraction`` and ``seed``, by file,
per source and class), and every image goes through what ``edgedetect predict`` runs: the model's crops
(:meth:`edgedetect.runtime.Classifier.inputs_for`), its combine rule and its threshold::

    python benchmarks/photo_val.py runs/photo_npr96-all5-synth models/photo_npr96_fp32.tflite models/photo_npr96_int8.tflite

Prints a markdown table (accuracy at each model's threshold and ROC-AUC, per source and overall; a source of one
class is ranked against every val image of the other class) and the label
agreement of every model with the first; ``--json FILE`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedetect.files import atomic_write_text  # noqa: E402
from edgedetect.metrics import binary_metrics, roc_auc  # noqa: E402
from edgedetect.runtime import Classifier  # noqa: E402
from training.native_data import run_val  # noqa: E402
from training.run import Run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the training run folder (its config names sources, carve and seed)")
    parser.add_argument("models", nargs="+", type=Path, help=".tflite files of that run; the first is the reference")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    val = run_val(Run.open(args.run).settings)
    y, sources = np.asarray(val.y), np.asarray(val.source)
    counts = val.counts()
    names_of_sources = sorted(counts)
    doc = {"run": str(args.run), "n": len(y), "per_source": {s: counts[s] for s in names_of_sources}, "models": {}}
    reference = None
    for path in args.models:
        model = Classifier(path, threads=None)
        p = np.array([model.p_fake(Image.fromarray(arr)) for arr in val.images])
        t = model.threshold
        row = {"threshold": t, "all": binary_metrics(y, p, t)}
        for s in names_of_sources:
            own = sources == s
            ranked = own | (y != y[own][0]) if len(set(y[own])) == 1 else own  # one class: against the other's val
            row[s] = {"accuracy": float(np.mean((p[own] >= t) == (y[own] == 1))), "roc_auc": roc_auc(y[ranked], p[ranked])}
        if reference is None:
            reference = p >= t
        row["agreement_with_first"] = float(np.mean((p >= t) == reference))
        doc["models"][str(path)] = row
    names = list(doc["models"])
    print(f"val split of {args.run}: {len(y)} images " + ", ".join(f"{s} {c}" for s, c in doc["per_source"].items()))
    print("\n| source | " + " | ".join(f"{n} acc | {n} AUC" for n in names) + " |")
    print("|---|" + "---:|---:|" * len(names))
    for s in [*names_of_sources, "all"]:
        cells = []
        for n in names:
            r = doc["models"][n][s]
            auc = r["roc_auc"]
            cells += [f"{r['accuracy']:.3f}", "-" if auc is None else f"{auc:.3f}"]
        print(f"| {s} | " + " | ".join(cells) + " |")
    for n in names[1:]:
        print(f"\n{n}: label agreement with {names[0]} {doc['models'][n]['agreement_with_first']:.4f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
