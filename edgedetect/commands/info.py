"""`edgedetect info`: what a .tflite model takes and gives, and the metadata that travels with it."""

from __future__ import annotations

from pathlib import Path

import typer

from edgedetect.commands import output
from edgedetect.commands.options import json_option


def info(
    model: Path = typer.Argument(..., exists=True, dir_okay=False, show_default=False, help="The .tflite model."),
    json_out: bool = json_option(),
) -> None:
    """Show a model's input/output tensors, dtypes, quantization, file size and metadata."""
    from edgedetect.runtime import Classifier

    desc = Classifier(model, threads=1).describe()
    if json_out:
        output.print_json(desc, default=str)
        return
    _print_human(desc)


def _flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict) and value:
        rows = []
        for k, v in value.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(value, float):
        return [(prefix, f"{value:.6g}")]
    if isinstance(value, (list, tuple)):
        return [(prefix, ", ".join(map(str, value)))]
    return [(prefix, "—" if value in (None, {}) else str(value))]


def _print_human(desc: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgedetect.errors import printable

    console = output.stdout(piped_width=None)
    size = desc["size_bytes"]
    macs = desc["macs_per_image"]
    console.print(f"[bold]{escape(printable(desc['model']))}[/]  {size:,} bytes ({size / 2**20:.2f} MiB) · "
                  + (f"{macs / 1e6:.2f} M multiply-accumulates per image · " if macs is not None else "")
                  + f"interpreter {escape(desc['interpreter'])}", highlight=False)
    tensors = Table(title="tensors", title_justify="left", header_style="bold")
    for col in ("", "name", "shape", "dtype", "scale", "zero point"):
        tensors.add_column(col)
    for role in ("input", "output"):
        t = desc[role]
        q = t["quantization"]
        tensors.add_row(role, escape(printable(t["name"])), str(t["shape"]), t["dtype"],
                        f"{q['scale']:.6g}" if q else "—", str(q["zero_point"]) if q else "—")
    console.print(tensors)
    meta = Table(title="metadata", title_justify="left", header_style="bold", show_header=False)
    meta.add_column("key", style="bold")
    meta.add_column("value", overflow="fold")
    for key, value in _flatten(desc["metadata"]):
        meta.add_row(escape(printable(key)), escape(printable(value)))
    console.print(meta)
