"""`edgedetect convert`: .keras/SavedModel -> .tflite at fp32, fp16, dynamic or int8 (needs the [train] extra)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgedetect.commands import output
from edgedetect.precision import IO_TYPES, PRECISIONS

# The choices come from the precision table (edgedetect.precision), plus "all".
Quant = Enum("Quant", {name: name for name in (*PRECISIONS, "all")}, type=str)
IOType = Enum("IOType", {name: name for name in IO_TYPES}, type=str)


def convert(
    model: Optional[Path] = typer.Argument(None, exists=True, show_default=False,
                                           help="A .keras file or SavedModel folder \\[default: the latest training run's best.keras]."),
    quant: Quant = typer.Option(Quant["int8"], "--quant", "-q", help="Precision: fp32, fp16, dynamic (int8 weights), int8 (full integer) or all four."),
    calib: Optional[Path] = typer.Option(None, "--calib", exists=True, show_default=False,
                                         help="Calibration images for int8: a dataset (folder/.tar.gz/.zip with REAL/FAKE folders; its train split) "
                                              "or a plain folder of images \\[default: the training run's data]."),
    num_calib: int = typer.Option(300, "--num-calib", min=1, help="Calibration images, balanced over REAL/FAKE, seeded."),
    io: IOType = typer.Option(IOType["float"], "--io", help="Input/output tensor type of the int8 file (int8/uint8 for microcontrollers and NPUs)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default=False,
                                       help="Output folder, or a .tflite path with a single --quant \\[default: beside the model]."),
    debug: bool = typer.Option(False, "--debug", help="Run TF's quantization debugger: print and write (CSV) the layers with the largest RMSE/scale."),
    keep_float: Optional[List[str]] = typer.Option(None, "--keep-float", show_default=False,
                                                   help="Leave these ops (HARD_SWISH, ...) or layers (block3_conv2, ...) in float in the int8 file; "
                                                        "comma-separated or repeated; 'none' for full integer "
                                                        "\\[default: HARD_SWISH when the model has it and --io is float]."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Convert a trained model to self-describing .tflite files and check them against the model."""
    from conversion.convert import ConversionConfig
    from conversion.convert import convert as run_conversion

    names = None  # automatic (see conversion.recipes.AUTO_KEEP_FLOAT)
    if keep_float:
        names = tuple(n.strip() for item in keep_float for n in item.split(",") if n.strip())
        if [n.lower() for n in names] == ["none"]:
            names = ()
    config = ConversionConfig.from_quant(
        quant.value, calib=str(calib) if calib else None, num_calib=num_calib, io=io.value,
        out=str(out) if out else None, debug=debug, keep_float=names, force=force,
    )
    report = run_conversion(model, config, log=output.log(), progress=output.show_progress())
    _print_report(report)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _short_tensor(name: str, width: int = 60) -> str:
    """``model_1/block2_conv1_1/convolution;...`` -> ``block2_conv1_1/convolution`` (the layer is what users know)."""
    last = name.split(";")[-1]
    parts = last.split("/")
    short = "/".join(parts[1:]) if len(parts) > 2 else last
    return short if len(short) <= width else "…" + short[-(width - 1):]


def _print_report(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = output.stdout(piped_width=140, highlight=False)  # piped or logged: never wrapped at 80 columns
    checked = any(o.n_checked for o in report.outputs)
    n = max((o.n_checked for o in report.outputs), default=0)
    table = Table(title=f"{escape(str(report.source))} ({report.arch}, {report.input_size} px, threshold {report.threshold:.3g})",
                  title_justify="left")
    for column in ("format", "size", "vs fp32", "io", "XNNPACK parts"):
        table.add_column(column, justify="left" if column in ("format", "io") else "right")
    if checked:
        for column in ("max |Δp|", "flips", "agreement"):
            table.add_column(column, justify="right")
        if report.reference_accuracy is not None:
            table.add_column("accuracy", justify="right")
    for o in report.outputs:
        row = [o.precision, _size(o.size_bytes), f"{o.size_bytes / report.fp32_size:.2f}", o.io, str(o.delegate_partitions)]
        if checked:
            row += [f"{o.max_abs_diff:.1e}", f"{o.flips}/{o.n_checked}", f"{100 * o.agreement:.2f}%"]
            if report.reference_accuracy is not None:
                row.append(f"{100 * o.accuracy:.2f}%")
        table.add_row(*row)
    console.print(table)
    if checked:
        ref = f"; Keras accuracy {100 * report.reference_accuracy:.2f}%" if report.reference_accuracy is not None else ""
        console.print(f"vs the source model on the {n} calibration images (flips: label changes at the threshold){ref}")
    for o in report.outputs:
        if o.precision == "int8" and o.float_ops:
            console.print("int8 file computes in float: " + ", ".join(f"{k}×{v}" for k, v in sorted(o.float_ops.items())))
    if report.debug_rows:
        debug = Table(title="largest quantization error (RMSE / scale; 1.0 = one quantization step)", title_justify="left")
        for column in ("#", "op", "tensor", "RMSE/scale", "max |err|"):
            debug.add_column(column, justify="right" if column != "tensor" and column != "op" else "left")
        for row in report.debug_rows[:10]:
            tensor = _short_tensor(row["tensor_name"])
            debug.add_row(str(row["rank"]), row["op_name"], escape(tensor), f"{row['rmse/scale']:.3f}",
                          f"{row['max_abs_error']:.3g}")
        console.print(debug)
        console.print(f"all {len(report.debug_rows)} layers: {escape(str(report.debug_csv))}  "
                      "(keep the worst in float with --keep-float OP_OR_LAYER)")
    for note in report.notes:
        if not note.startswith("warning:"):  # warnings were already logged as they happened
            console.print(note)
    console.print("wrote (each with its .json metadata):")
    for p in report.paths:
        console.print(f"  {escape(str(p))}")
