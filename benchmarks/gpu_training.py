"""Per-epoch training time of the shipped architectures on this machine's accelerator (or CPU), any Keras backend.

Trains each architecture for a few epochs with ``edgedetect train`` (a subprocess, exactly the command users run)
under ``KERAS_BACKEND`` (default ``jax``: GPU machines without TensorFlow are common), reads each epoch's seconds
and the device from the run folder (``history.json``, ``config.json``), and adds one row per architecture and host to
``benchmarks/results/gpu_training.json``; ``benchmarks/gpu_training.md`` is rendered from all rows, so a CPU run
and a GPU run of the same settings sit side by side::

    python benchmarks/gpu_training.py                                # here: CPU, jax backend
    KERAS_BACKEND=tensorflow python benchmarks/gpu_training.py       # the TensorFlow backend, for comparison
    python benchmarks/gpu_training.py --data-dir .gpu-data --out /tmp/gpu-runs   # on a GPU machine

``--data-dir`` holds ``cifake-train.tar.gz`` (the 32-px architectures) and ``faces.tar.gz`` (``photo_cnn``,
native-resolution crops): 56 MB, small enough to carry to a machine that lacks ``../shared``. A GPU image without
TensorFlow needs the ``keras``, ``namex`` and ``optree`` wheels carried beside it (``pip download --no-deps
--only-binary=:all: -d .whl keras namex optree``; install them with ``pip install --no-index --no-deps --target``
and put that folder on ``PYTHONPATH``). The first epoch includes compilation, so the table reports it apart from
the median of the others.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedetect.files import atomic_write_text  # noqa: E402
from training.run import HISTORY, Run  # noqa: E402
RESULTS = REPO / "benchmarks" / "results" / "gpu_training.json"
REPORT = REPO / "benchmarks" / "gpu_training.md"

# What each shipped architecture trains on, with settings small enough to time in minutes on a CPU.
ARCHS = {
    "cnn": ["--data", "{data}/cifake-train.tar.gz", "--batch-size", "64"],
    "mobilenet_v3_small_min": ["--data", "{data}/cifake-train.tar.gz", "--batch-size", "64"],
    "photo_cnn": ["--data", "{data}/faces.tar.gz", "--preprocess", "crops", "--front", "npr", "--img-size", "96",
                  "--steps-per-epoch", "120", "--batch-size", "32"],
}


def train(arch: str, data: Path, out: Path, epochs: int, limit: int | None) -> dict:
    args = [a.format(data=data) for a in ARCHS[arch]]
    if limit and "--preprocess" not in args:
        args += ["--limit", str(limit)]
    run_dir = out / f"{arch}-{os.environ['KERAS_BACKEND']}-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [sys.executable, "-m", "edgedetect", "train", "--arch", arch, *args, "--epochs", str(epochs),
           "--patience", str(epochs), "--out", str(run_dir)]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"{arch}: edgedetect train failed (exit {proc.returncode}):\n" + "\n".join(tail))
    run = Run.open(run_dir)
    seconds = run.read(HISTORY)["seconds"]
    return {"arch": arch, "settings": " ".join(args).replace(str(data), "DATA"), "epochs": len(seconds),
            "first_epoch_s": round(seconds[0], 1),
            "median_epoch_s": round(statistics.median(seconds[1:]), 1) if len(seconds) > 1 else None,
            "wall_s": round(wall, 1), "device": run.config["device"]}


def host() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "backend": os.environ.get("KERAS_BACKEND", "jax"), "date": time.strftime("%Y-%m-%d")}


def markdown(rows: list[dict]) -> str:
    lines = ["# Training time per epoch: CPU and GPU, by Keras backend", "",
             "Made by `python benchmarks/gpu_training.py` (see its docstring); one row per architecture, host and "
             "backend. `first` includes compilation; `median` is over the other epochs. Settings are the same on "
             "every host, so the rows of one architecture compare directly.", "",
             "| arch | device | backend | CPU (cores) | epochs | first s | median s | settings | date |",
             "|---|---|---|---|---:|---:|---:|---|---|"]
    for r in sorted(rows, key=lambda r: (r["arch"], r["device"], r["backend"])):
        lines.append(f"| {r['arch']} | {r['device']} | {r['backend']} | {r['cpu']} ({r['cores']}) | {r['epochs']} | "
                     f"{r['first_epoch_s']} | {r['median_epoch_s']} | `{r['settings']}` | {r['date']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder with cifake-train.tar.gz and faces.tar.gz (default ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-training", help="run folders go here")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20000, help="CIFAKE training images for the 32-px archs")
    parser.add_argument("--archs", default=",".join(ARCHS), help=f"comma-separated, of: {', '.join(ARCHS)}")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise SystemExit(f"--archs: unknown {', '.join(unknown)}; valid: {', '.join(ARCHS)}")
    rows = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    info = host()
    for arch in archs:
        row = {**train(arch, args.data_dir.resolve(), args.out, args.epochs, args.limit), **info}
        print(json.dumps(row), flush=True)
        rows = [r for r in rows if (r["arch"], r["device"], r["backend"], r["cpu"]) !=
                (row["arch"], row["device"], row["backend"], row["cpu"])] + [row]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(RESULTS, json.dumps(rows, indent=1) + "\n")
        atomic_write_text(REPORT, markdown(rows))
    print(f"wrote {REPORT.relative_to(REPO)} and {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
