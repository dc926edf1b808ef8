"""`edgedetect evaluate`: metrics of a .keras or .tflite model on a labelled dataset split."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from edgedetect.commands import output
from edgedetect.commands.options import json_option, limit_option, threads_option, threshold_option


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"


class Method(str, Enum):
    youden = "youden"
    f1 = "f1"


def evaluate(
    model: Path = typer.Argument(..., exists=True, dir_okay=False, show_default=False,
                                 help="A .tflite model (run by the interpreter, as predict does) or a .keras model (needs the \\[train] extra)."),
    data: Path = typer.Option(..., "--data", exists=True, show_default=False,
                              help="Dataset folder or .tar.gz/.zip with REAL/FAKE class folders, optionally under train/val/test."),
    split: Split = typer.Option(Split.test, "--split", help="The split to score."),
    threshold: Optional[float] = threshold_option("the model's own threshold, else 0.5"),
    optimize_threshold: Optional[Method] = typer.Option(None, "--optimize-threshold", show_default=False,
                                                        help="Choose the threshold on the data's val split (carved from train if needed; never the test split) by Youden's J or best F1."),
    json_out: bool = json_option(),
    plots: Optional[Path] = typer.Option(None, "--plots", show_default=False,
                                         help="Write roc.png, confusion_matrix.png and worst_mistakes.png into this folder."),
    limit: Optional[int] = limit_option("At most N images of each split used"),
    threads: Optional[int] = threads_option("Interpreter threads for a .tflite"),
    force: bool = typer.Option(False, "--force", help="Overwrite plots already in the --plots folder."),
) -> None:
    """Score a .keras or .tflite model on a labelled split: accuracy, precision, recall, F1, ROC-AUC, confusion matrix.

    Exit 0: every image scored; 1: some files could not be read (listed on stderr; the rest are scored).
    """
    from edgedetect.evaluate import EvalConfig, check_options
    from edgedetect.evaluate import evaluate as run_evaluation

    cfg = EvalConfig(model=str(model), data=str(data), split=split.value, threshold=threshold,
                     optimize_threshold=optimize_threshold.value if optimize_threshold else None,
                     plots=str(plots) if plots else None, force=force, limit=limit, threads=threads)
    check_options(cfg)  # before loading a model: a mistake in the options costs no Keras start-up
    scorer = _keras_scorer(model) if model.suffix.lower() == ".keras" else None  # None: the interpreter's
    report = run_evaluation(cfg, progress=output.show_progress(not json_out), scorer=scorer).report
    if json_out:
        output.print_json(report)
    else:
        _print_human(report)
    if report.get("errors"):
        output.print_errors(report)
    if report.get("plot_error"):
        output.error(report["plot_error"])
    if report.get("errors") or report.get("plot_error"):
        raise typer.Exit(1)


def _keras_scorer(model: Path):
    """The Keras backend for a .keras file: the one place the runtime's evaluate meets training code."""
    from edgedetect.errors import EdgeDetectError

    try:
        import keras  # noqa: F401
        from training.keras_model import KerasScorer
    except ImportError:
        raise EdgeDetectError(f"{model}: evaluating a .keras model needs Keras and TensorFlow "
                              "(pip install 'edgedetect[train]'), or evaluate its .tflite instead") from None
    return KerasScorer(model)


def _print_human(r: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgedetect import LABELS

    console = output.stdout()
    count = r.get("limit", f"{r['n']} images")
    console.print(f"[bold]{escape(r['model'])}[/] on {escape(r['data'])}, split {r['split']}: {escape(count)}",
                  highlight=False)
    console.print(f"threshold {r['threshold']:.4g}: {escape(r['threshold_source'])}", highlight=False)
    metrics = Table(box=None, header_style="bold", show_header=False)
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc"):
        value = r[key]
        metrics.add_row(key.replace("_", " "), "n/a (one class)" if value is None else f"{value:.4f}")
    console.print(metrics)

    cm = Table(title="confusion matrix", title_justify="left", header_style="bold")
    cm.add_column("")
    for label in LABELS:
        cm.add_column(f"pred {label}", justify="right")
    for label, row in zip(LABELS, r["confusion_matrix"]):
        total = max(sum(row), 1)
        cm.add_row(f"true {label}", *(f"{v} ({v / total:.1%})" for v in row))
    console.print(cm)
    for path in r.get("plots", []):
        console.print(f"plot: {escape(path)}", highlight=False)
