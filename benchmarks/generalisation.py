"""Cross-source evaluation of native-resolution detectors: train on some sources, test on the ones left out.

One command reproduces ``benchmarks/generalisation.md`` and ``benchmarks/results/generalisation.json``::

    python benchmarks/generalisation.py                # trains what is missing (~10-15 min a protocol on 2 cores)
    python benchmarks/generalisation.py --protocol A   # one protocol

Each protocol trains ``photo_cnn`` with the NPR front end on its training sources (``edgedetect train
--preprocess crops``; an existing run folder is reused), converts it to fp32 and int8 .tflite (``edgedetect
convert``), then scores every held-out source three ways: the Keras model, the fp32 file and the int8 file, the
last two through ``edgedetect.predict.predict_files`` — exactly what ``edgedetect predict`` does. Per source it
reports accuracy at the model's threshold (chosen on the training sources' val split, never on held-out data)
and ROC-AUC of that source against the held-out images of the other class.

sd15 files are 2x2 grids: held out, each tile is written as a lossless PNG of its decoded pixels and scored as
one image (the decoded pixels are the WebP's; only the container changes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedetect.files import atomic_write_text  # noqa: E402
from training.run import METRICS, Run  # noqa: E402

DATA = REPO.parent / "shared" / "data"
GRIDS = {"sd15": (2, 2)}
TRAIN_SETTINGS = ["--arch", "photo_cnn", "--preprocess", "crops", "--front", "npr", "--img-size", "96",
                  "--epochs", "20", "--steps-per-epoch", "75", "--batch-size", "32", "--patience", "20"]
# Each protocol states its codec augmentation rather than inheriting `edgedetect train`'s defaults, so a protocol
# means the same run whatever the defaults become. JPEG_ONLY is the recipe before WebP re-encoding existed.
JPEG_ONLY = ["--jpeg-prob", "0.5", "--webp-prob", "0"]
WEBP = ["--jpeg-prob", "0.4", "--webp-prob", "0.4"]
WEBP_NOTE = "with the training crops re-encoded as WebP (p 0.4) as well as JPEG (p 0.4), both classes alike"
A = {"train": ["faces", "sd15", "imagenet"], "test": ["sdfd", "dreambooth"], "extra": JPEG_ONLY}
B = {"train": ["sdfd", "dreambooth"], "test": ["faces", "sd15", "imagenet"], "extra": JPEG_ONLY}
SAFE = [*JPEG_ONLY, "--jitter", "0.5", "--mask-prob", "0.5"]
SAFE_NOTE = "plus SAFE's colour jitter (0.5) and random masking (p 0.5)"
SHUFFLE = [*JPEG_ONLY, "--shuffle-prob", "0.5"]
SHUFFLE_NOTE = "with half the training crops' 16-px squares permuted"
PROTOCOLS = {
    "A": A,
    "A-synth": {**A, "extra": [*JPEG_ONLY, "--synth-fakes", "0.25"],
                "note": "A plus synthetic FAKE crops (25% of FAKE samples)"},
    "A-safe": {**A, "extra": SAFE, "note": f"A {SAFE_NOTE}"},
    "A-shuffle": {**A, "extra": SHUFFLE, "note": f"A {SHUFFLE_NOTE}"},
    "A-webp": {**A, "extra": WEBP, "note": f"A {WEBP_NOTE}"},
    "A-webp-seed1": {**A, "extra": [*WEBP, "--init-seed", "1"], "note": "A-webp again with other initial weights, "
                     "data order and augmentation (--init-seed 1): how much of A-webp's change is one run's luck"},
    "B": B,
    "B-shuffle": {**B, "extra": SHUFFLE, "note": f"B {SHUFFLE_NOTE}"},
    "B-safe": {**B, "extra": SAFE, "note": f"B {SAFE_NOTE}"},
    "B-webp": {**B, "extra": WEBP, "note": f"B {WEBP_NOTE}"},
}


def source_arg(name: str) -> str:
    rows_cols = GRIDS.get(name)
    path = DATA / f"{name}.tar.gz"
    return f"{path}@{rows_cols[0]}x{rows_cols[1]}" if rows_cols else str(path)


def extract(name: str, work: Path) -> Path:
    """The source as a folder of images (grids split into PNG tiles); reused when already there."""
    from PIL import Image

    folder = work / "sources" / name
    done = folder / ".complete"
    if done.is_file():
        return folder
    with tarfile.open(DATA / f"{name}.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    if name in GRIDS:
        rows, cols = GRIDS[name]
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".webp", ".png", ".jpg")):
            with Image.open(path) as img:
                img = img.convert("RGB")
                w, h = img.size[0] // cols, img.size[1] // rows
                for r in range(rows):
                    for c in range(cols):
                        img.crop((c * w, r * h, (c + 1) * w, (r + 1) * h)).save(path.with_name(f"{path.stem}_t{r}{c}.png"))
            path.unlink()
    atomic_write_text(done, "ok\n")
    return folder


def labelled_files(folder: Path) -> list[tuple[str, int]]:
    from edgedetect.archives import is_image_name
    from edgedetect.layout import classify

    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and is_image_name(p.name):
            label = classify(p.relative_to(folder).as_posix())[1]
            if label is not None:
                out.append((str(p), label))
    return out


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def ensure_run(name: str, spec: dict, runs: Path, reconvert: bool = False) -> Path:
    run_dir = runs / f"photo-{name}-{'_'.join(spec['train'])}"
    if not (run_dir / METRICS).is_file():
        cmd = [sys.executable, "-m", "edgedetect", "train", *TRAIN_SETTINGS, *spec.get("extra", []), "--out", str(run_dir)]
        for s in spec["train"]:
            cmd += ["--data", source_arg(s)]
        if (run_dir / "state.json").is_file():
            cmd = [sys.executable, "-m", "edgedetect", "train", "--resume", str(run_dir)]
        run(cmd)
    for precision in ("fp32", "int8"):
        if reconvert or not (run_dir / f"{run_dir.name}_{precision}.tflite").is_file():
            run([sys.executable, "-m", "edgedetect", "convert", str(run_dir / "best.keras"), "--quant", precision,
                 "--force"])
    return run_dir


def keras_scores(run_dir: Path, files: list[str]) -> np.ndarray:
    from edgedetect.crops import combine, native_crops
    from edgedetect.preprocess import open_image
    from training.keras_model import input_size, load_keras, predict_keras
    from training.run import Run

    run = Run.open(run_dir, need_model=True)
    metrics = run.metrics
    model = load_keras(run.best_model)
    size = input_size(model)
    out = []
    for path in files:
        crops, _, _ = native_crops(open_image(path), size, int(metrics["max_crops"]))
        out.append(combine(predict_keras(model, crops), metrics["combine"]))
    return np.array(out)


def tflite_scores(model: Path, files: list[str]) -> tuple[np.ndarray, float, int]:
    from edgedetect.predict import predict_files
    from edgedetect.runtime import Classifier

    clf = Classifier(model)
    results = predict_files(clf, files)
    by_path = {r["path"]: r for r in results}
    warned = sum(1 for r in results if r.get("warning"))
    return np.array([by_path[f]["p_fake"] for f in files]), clf.threshold, warned


def per_source(scores: np.ndarray, labels: np.ndarray, sources: np.ndarray, threshold: float) -> dict:
    from edgedetect.metrics import binary_metrics, roc_auc

    out = {"all held-out": {**_brief(binary_metrics(labels, scores, threshold)), "n": int(len(labels))}}
    for name in dict.fromkeys(sources):
        for label in (0, 1):  # a source may hold both classes (faces): one row per source and class
            m = (sources == name) & (labels == label)
            if not m.any():
                continue
            idx = m | (labels != label)  # this source's images of the class against every held-out one of the other
            auc = roc_auc(labels[idx], scores[idx]) if (labels != label).any() else None
            out[f"{name} {('REAL', 'FAKE')[label]}"] = {
                "source": name, "class": ("REAL", "FAKE")[label], "n": int(m.sum()),
                "accuracy": float(np.mean((scores[m] >= threshold) == (label == 1))),
                "roc_auc_vs_other_class": auc, "median_p_fake": float(np.median(scores[m]))}
    return out


def _brief(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "roc_auc", "f1", "balanced_accuracy") if k in m}


def protocol(name: str, spec: dict, runs: Path, work: Path, reconvert: bool = False) -> dict:
    run_dir = ensure_run(name, spec, runs, reconvert)
    files, labels, sources = [], [], []
    for s in spec["test"]:
        for path, label in labelled_files(extract(s, work)):
            files.append(path)
            labels.append(label)
            sources.append(s)
    labels, sources = np.array(labels), np.array(sources)
    metrics = Run.open(run_dir).metrics
    results = {"date": time.strftime("%Y-%m-%d"), "train_sources": spec["train"], "test_sources": spec["test"], "run": str(run_dir),
               "note": spec.get("note", ""), "train_options": TRAIN_SETTINGS + spec.get("extra", []),
               "threshold": metrics["threshold"], "combine": metrics["combine"], "max_crops": metrics["max_crops"],
               "val_in_source": _brief(metrics["val"]), "val_per_source": metrics.get("val_per_source"), "models": {}}
    t0 = time.perf_counter()
    results["models"]["keras"] = per_source(keras_scores(run_dir, files), labels, sources, metrics["threshold"])
    for precision in ("fp32", "int8"):
        path = run_dir / f"{run_dir.name}_{precision}.tflite"
        scores, threshold, warned = tflite_scores(path, files)
        results["models"][precision] = per_source(scores, labels, sources, threshold)
        results["models"][precision]["images_with_warning"] = warned
    results["scoring_seconds"] = round(time.perf_counter() - t0, 1)
    return results


def markdown(doc: dict) -> str:
    lines = ["# Cross-source generalisation of the native-resolution detector", "",
             f"Made by `python benchmarks/generalisation.py` on {doc['date']} ({doc['host']}). Each protocol trains on "
             "some sources of `../shared/data` and tests on the sources left out; no held-out image is used for "
             "training, threshold or checkpoint choice. Accuracy is at the model's threshold (chosen on the training "
             "sources' val split); a source's ROC-AUC is against the held-out images of the other class. The int8 files "
             "are what `edgedetect convert --quant int8` makes (full-integer trunk, the NPR front end kept in float).", "",
             "## Summary: all held-out images of each protocol", "",
             "| protocol | trained on | tested on | keras AUC | fp32 AUC | int8 AUC | fp32 acc | int8 acc | int8 - fp32 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, res in doc["protocols"].items():
        m = {k: res["models"][k]["all held-out"] for k in ("keras", "fp32", "int8")}
        lines.append(f"| {name} | {' + '.join(res['train_sources'])} | {' + '.join(res['test_sources'])} | "
                     f"{m['keras']['roc_auc']:.3f} | {m['fp32']['roc_auc']:.3f} | {m['int8']['roc_auc']:.3f} | "
                     f"{m['fp32']['accuracy']:.3f} | {m['int8']['accuracy']:.3f} | "
                     f"{100 * (m['int8']['accuracy'] - m['fp32']['accuracy']):+.1f} pt |")
    lines.append("")
    for name, res in doc["protocols"].items():
        lines += [f"## Protocol {name}: train on {' + '.join(res['train_sources'])}, test on {' + '.join(res['test_sources'])}",
                  "", (res.get("note") + ". " if res.get("note") else "") + f"Measured {res.get('date', doc['date'])}. Run `{res['run']}`; threshold {res['threshold']:.3f}; per image: {res['combine']} of up to "
                  f"{res['max_crops']} crops. In-source val (carved from the training sources): accuracy "
                  f"{res['val_in_source']['accuracy']:.3f}, ROC-AUC {res['val_in_source']['roc_auc']:.3f}.", "",
                  "| model | held-out source | class | n | accuracy | ROC-AUC vs other class | median p_fake |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for model, table in res["models"].items():
            for source, row in table.items():
                if source in ("all held-out", "images_with_warning"):
                    continue
                auc = "-" if row["roc_auc_vs_other_class"] is None else f"{row['roc_auc_vs_other_class']:.3f}"
                lines.append(f"| {model} | {row['source']} | {row['class']} | {row['n']} | {row['accuracy']:.3f} | {auc} | "
                             f"{row['median_p_fake']:.3f} |")
            a = table["all held-out"]
            lines.append(f"| {model} | **all held-out** | both | {a['n']} | {a['accuracy']:.3f} | {a['roc_auc']:.3f} | |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", action="append", choices=sorted(PROTOCOLS), help="run only these (repeatable)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="where the protocol runs live")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgedetect-generalisation",
                        help="extracted held-out sources")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "generalisation.json")
    parser.add_argument("--md", type=Path, default=REPO / "benchmarks" / "generalisation.md")
    parser.add_argument("--reconvert", action="store_true",
                        help="convert the runs to .tflite again even where the files exist (after a converter change)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA}: the shared data is not there; this benchmark needs its native-resolution sets")
    doc = json.loads(args.json.read_text()) if args.json.is_file() else {"protocols": {}}
    for name in args.protocol or sorted(PROTOCOLS):
        doc["protocols"][name] = protocol(name, PROTOCOLS[name], args.runs, args.work, args.reconvert)
    doc.update(date=time.strftime("%Y-%m-%d"), host=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")
    atomic_write_text(args.md, markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
