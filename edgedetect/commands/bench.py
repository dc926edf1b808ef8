"""`edgedetect bench`: size, latency, throughput, accuracy and drift of .tflite models (interpreter only)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgedetect.commands import output
from edgedetect.commands.options import limit_option, threads_option
from edgedetect.files import check_writable
from edgedetect.plots import check_plot_path


def bench(
    models: Optional[List[Path]] = typer.Argument(None, metavar="[MODEL.tflite]...", show_default=False,
                                                  help="Models to compare \\[default: every shipped model]."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", show_default=False,
                                        help="Images (folder, searched recursively, or .tar.gz/.zip) for throughput; "
                                             "REAL/FAKE class folders also give accuracy and drift."),
    reference: Optional[Path] = typer.Option(None, "--reference", show_default=False,
                                             help="Compare every model with this one \\[default: each model's fp32 sibling, <family>_fp32.tflite]."),
    threads: Optional[int] = threads_option("Interpreter threads for the latency measurement"),
    runs: int = typer.Option(100, "--runs", min=1, help="Timed batch-1 invokes per model (median and p90)."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Untimed invokes before them."),
    limit: Optional[int] = limit_option("At most N images of --data"),
    perturb: Optional[str] = typer.Option(None, "--perturb", show_default=False, metavar="SPEC",
                                          help="Accuracy again under each perturbation, e.g. jpeg:50,resize:0.5,blur:1.0 "
                                               "(JPEG quality, downscale factor, Gaussian blur radius)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables: data, n_images, "
                                  "reference, host, method, rows (one per model; perturbations per row), errors."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", show_default=False, metavar="FILE",
                                           help="Also write one line per model to this .csv file."),
    plot: Optional[Path] = typer.Option(None, "--plot", show_default=False, metavar="FILE",
                                        help="Also draw latency vs accuracy (bubble = size) into this picture."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, show_default=False,
                                          help="Processes for the throughput pass, one interpreter thread each \\[default: all cores]."),
    force: bool = typer.Option(False, "--force", help="Overwrite the --csv and --plot files if they exist."),
    tolerance: float = typer.Option(0.3, "--tolerance", min=0.0, max=100.0, metavar="POINTS",
                                    help="Accuracy points the recommended file may give up against the most accurate one for speed."),
) -> None:
    """Benchmark models: size, MACs, batch-1 latency, end-to-end throughput and its ratio to the decode floor,
    accuracy, drift vs fp32, robustness; ends with the file to use on this host.

    Exit 0 when every image was read, 1 when some could not be (they are listed; the others are measured).
    """
    from rich.markup import escape

    from edgedetect.bench import BenchConfig, plot_bench, render, run_bench, write_csv
    from edgedetect.errors import EdgeDetectError, printable

    if csv_out is not None:
        check_writable(csv_out, force, option="--csv", suffixes=(".csv",))
    if plot is not None:
        check_plot_path(plot, force)
    cfg = BenchConfig(models=[str(m) for m in models or []], data=str(data) if data is not None else None,
                      reference=str(reference) if reference is not None else None, threads=threads, runs=runs,
                      warmup=warmup, limit=limit, perturb=perturb, workers=workers,
                      tolerance=tolerance / 100)
    doc = run_bench(cfg, log=None if json_out else output.log(style="dim"))
    # The results are printed before the files are written: a full disk costs the files, not the figures.
    out = output.stdout(piped_width=160, highlight=False)  # a pipe gets the full table
    if json_out:
        output.print_json(doc)
    else:
        render(doc, out)
    output.print_errors(doc)
    failed = bool(doc["errors"] or doc.get("model_errors"))
    for path, what, write in ((csv_out, "table", write_csv), (plot, "plot", plot_bench)):
        if path is None:
            continue
        try:
            write(doc, path)
        except EdgeDetectError as e:
            output.error(str(e))
            failed = True
            continue
        if not json_out:
            out.print(f"{what} written to {escape(printable(str(path)))}")
    if failed:
        raise typer.Exit(1)
