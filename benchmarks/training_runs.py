"""Tabulate training runs: settings, wall time and params from each run folder, val figures from its
metrics.json, and test figures measured now by evaluating its best.keras on the CIFAKE test tarball.

    python benchmarks/training_runs.py runs/cnn-32-e40 runs/cnn_wide-32-e30 ... [--test ../shared/data/cifake-test.tar.gz]

Prints a markdown table (the one in benchmarks/training.md) and writes the rows as JSON with --json FILE.
The test threshold is the one chosen on val during training (Youden's J), never one chosen on test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgedetect.evaluate import EvalConfig, evaluate  # noqa: E402
from edgedetect.files import atomic_write_text  # noqa: E402
from training.keras_model import KerasScorer  # noqa: E402
from training.run import Run  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_TEST = HERE.parent.parent / "shared" / "data" / "cifake-test.tar.gz"


def run_row(run_dir: Path, test_data: Path) -> dict:
    run = Run.open(run_dir, need_model=True)
    metrics, cfg = run.metrics, run.settings
    test = evaluate(EvalConfig(model=str(run.best_model), data=str(test_data), split="test"),
                    scorer=KerasScorer(run.best_model)).report
    command = run.config.get("command") or []
    return {
        "run": run_dir.name,
        "arch": f"{run.arch}({'+'.join(run.member_archs)})" if run.member_archs else run.arch,  # ensemble(cnn+cnn)
        "img_size": cfg["img_size"],
        # an ensemble (edgedetect ensemble) has no epochs of its own: its members' rows have them
        "epochs": f"{metrics['best_epoch']}/{metrics['epochs_run']} of {cfg['epochs']}" if "best_epoch" in metrics else "-",
        "train_minutes": round(metrics["train_seconds"] / 60, 1) if "train_seconds" in metrics else "-",
        "params": metrics["params"],
        "val": {k: metrics["val"][k] for k in ("accuracy", "f1", "roc_auc")},
        "test": {k: test[k] for k in ("accuracy", "f1", "roc_auc", "threshold", "n")},
        "command": "edgedetect " + shlex.join(command[1:]) if command else "",
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| run | arch | px | best/run/max epochs | train min | params | val acc | val F1 | val AUC | "
             "test acc | test F1 | test AUC |", "|---" * 12 + "|"]
    for r in rows:
        v, t = r["val"], r["test"]
        lines.append(f"| {r['run']} | {r['arch']} | {r['img_size']} | {r['epochs']} | {r['train_minutes']} | "
                     f"{r['params']:,} | {v['accuracy']:.2%} | {v['f1']:.4f} | {v['roc_auc']:.4f} | "
                     f"{t['accuracy']:.2%} | {t['f1']:.4f} | {t['roc_auc']:.4f} |")
    lines.append("")
    lines += [f"- `{r['run']}`: `{r['command']}`" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--test", type=Path, default=DEFAULT_TEST, help="test dataset (default: ../shared CIFAKE test)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = [run_row(run, args.test) for run in args.runs]
    print(markdown(rows))
    print(f"\nmeasured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this host'} ({platform.platform()}), "
          f"test data {args.test}")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
