"""`edgedetect predict`: label images REAL or FAKE with a .tflite model (interpreter only)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgedetect.commands import output
from edgedetect.commands.options import force_option, images_argument, model_option, threads_option, threshold_option


def predict(
    paths: List[str] = images_argument("PATH", "Image files, folders (searched recursively) or quoted glob patterns such as 'imgs/**/*.jpg'."),
    model: Optional[Path] = model_option("The .tflite model (its .json metadata beside it) \\[default: the shipped pair: a 32-px model for images under the photo model's crop size, the native-resolution photo model for the rest; each result names the one that decided]."),
    threshold: Optional[float] = threshold_option("the deciding model's threshold"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document (model, threshold, results) instead of a table."),
    plot: Optional[Path] = typer.Option(None, "--plot", show_default=False,
                                        help="Also draw the images with label, p_fake and threshold into this picture (.png), at most 64."),
    threads: Optional[int] = threads_option(),
    force: bool = force_option("Overwrite the --plot file if it exists."),
) -> None:
    """Classify images as REAL or FAKE (AI-generated). Exit 0: all classified; 1: some failed; 2: usage error."""
    from edgedetect.errors import printable
    from edgedetect.plots import MAX_PLOT_IMAGES, check_plot_path
    from edgedetect.predict import AutoModel, load_default_models, model_description, summarize
    from edgedetect.runtime import Classifier

    if plot is not None:
        check_plot_path(plot, force)  # fail before the work, not after it
    clf = Classifier(model, threads=threads) if model is not None else load_default_models(threads)
    models = clf.models if isinstance(clf, AutoModel) else [clf]
    t = threshold
    resolved = [m.resolve_threshold(threshold) for m in models]
    threshold_source = " / ".join(dict.fromkeys(r.source for r in resolved))
    shown_t = " / ".join(f"{r.value:g}" for r in resolved) if threshold is None else f"{threshold:g}"

    results = _run_with_progress(clf, paths, t, show=not json_out)
    summary = summarize(results)
    # The results are printed before the plot is written: a full disk costs the picture, not the answers.
    if json_out:
        first = models[0]
        doc = {"model": str(first.path) if len(models) == 1 else [str(m.path) for m in models],
               "threshold": first.threshold if t is None and len(models) == 1 else t, "results": results, **summary,
               "threshold_source": threshold_source, "precision": first.metadata.precision,
               "input_size": first.input_size,
               "models": {m.path.name: {"path": str(m.path), "precision": m.metadata.precision, "mode": m.mode,
                                        "input_size": m.input_size, "threshold": m.threshold} for m in models},
               "routing": (f"shorter side < {clf.min_side} px: {clf.small.path.name}; otherwise {clf.photo.path.name}"
                           if isinstance(clf, AutoModel) else None),
               "interpreter": f"{first.interpreter_package} {first.interpreter_version}",
               "plot": str(plot) if plot is not None else None}
        output.print_json(doc)
    else:
        _print_human(results, summary, model_description(clf), shown_t, threshold_source, show_model=len(models) > 1)
    if plot is not None:
        from edgedetect.plots import plot_predictions

        names = " + ".join(m.path.name for m in models)
        drawn = plot_predictions(results, plot, title=f"{names} · threshold {shown_t}", max_images=MAX_PLOT_IMAGES,
                                 force=force, threshold=t)  # None: each image against its deciding model's threshold
        if not json_out:
            output.echo(f"plot: {printable(str(plot))} ({drawn} image{'' if drawn == 1 else 's'})")
    if summary["n_failed"]:
        raise typer.Exit(1)


def _run_with_progress(clf, paths: List[str], threshold: float, show: bool) -> list:
    from edgedetect.predict import predict_files

    with output.progress_bar("classifying", show) as update:
        return predict_files(clf, paths, threshold, progress=update)


def _print_human(results, summary, model_line, threshold, threshold_source, show_model=False) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgedetect.errors import printable

    console = output.stdout()  # piped or redirected: one line per image, never folded
    ok = [r for r in results if r["error"] is None]
    if ok:
        table = Table(box=None, header_style="bold")
        table.add_column("path", overflow="fold")
        table.add_column("label")
        table.add_column("p_fake", justify="right")
        if show_model:
            table.add_column("model")
        for r in ok:
            color = "red" if r["label"] == "FAKE" else "green"
            row = [escape(printable(r["path"])), f"[{color}]{r['label']}[/]", f"{r['p_fake']:.4f}"]
            if show_model:
                row.append(escape(r["model"] or ""))
            table.add_row(*row)
        console.print(table)
    for r in ok:
        if r.get("warning"):
            console.print(f"[yellow]warning:[/] {escape(printable(r['path']))}: {escape(r['warning'])}", highlight=False)
    console.print(f"{summary['n_fake']} FAKE, {summary['n_real']} REAL, {summary['n_failed']} failed · "
                  f"model {escape(model_line)} · threshold {threshold} ({threshold_source})", highlight=False)
    failed = [r for r in results if r["error"] is not None]
    if failed:
        err = output.stderr()
        err.print(f"[bold red]{len(failed)} failed:[/]")
        for r in failed:
            err.print(f"  {escape(printable(r['path']))}: {escape(printable(r['error']))}", highlight=False,
                      soft_wrap=True)
