"""The bench's output: tables on a console, the unreadable files, a CSV line per model and the bubble plot."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from edgedetect.bench.host import CPU_FLAGS
from edgedetect.bench.run import CONTRACT_KEYS
from edgedetect.errors import printable
from edgedetect.precision import TABLE, color_of


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def render(doc: dict, console) -> None:
    """Print ``doc`` as tables (Ultralytics-style) on a rich ``console``."""
    from rich.markup import escape
    from rich.table import Table

    host = doc["host"]
    table = Table(title=f"edgedetect bench · {escape(doc['data'] or 'no data (size and latency only)')}"
                  + (f" · {doc['n_images']:,} images" if doc["data"] else ""), title_justify="left")
    columns = ("Model", "Prec.", "MB", "MMAC", "Acc", "F1", "AUC", "ms/img p50 (p90)", "img/s", "× floor", "ΔAcc pt",
               "Agree", "max|Δp|")
    for col in columns:
        table.add_column(col, justify="left" if col in ("Model", "Prec.") else "right", no_wrap=True)
    for r in doc["rows"]:
        delta = None if r["delta_accuracy"] is None else 100 * r["delta_accuracy"]
        macs = None if r["macs_per_image"] is None else r["macs_per_image"] / 1e6
        table.add_row(escape(Path(r["model"]).stem), r["precision"], f"{r['size_bytes'] / 1e6:.2f}", _fmt(macs, ".2f"),
                      _fmt(r["accuracy"], ".4f"), _fmt(r["f1"], ".4f"), _fmt(r["roc_auc"], ".4f"),
                      f"{r['latency_ms_p50']:.3f} ({r['latency_ms_p90']:.3f})", _fmt(r["throughput_ips"], ",.0f"),
                      _fmt(r["floor_ratio"], ".2f"), _fmt(delta, "+.2f"), _fmt(r["agreement"], ".4f"),
                      _fmt(r["max_abs_dp"], ".4f"))
    console.print(table)
    if doc["perturbations"]:
        pt = Table(title="Accuracy under perturbation (change vs clean, points)", title_justify="left")
        pt.add_column("Model", no_wrap=True)
        pt.add_column("clean", justify="right")
        for name in doc["perturbations"]:
            pt.add_column(name, justify="right")
        for r in doc["rows"]:
            cells = []
            for name in doc["perturbations"]:
                acc = r["perturbations"][name]["accuracy"]
                cells.append("-" if acc is None or r["accuracy"] is None
                             else f"{acc:.4f} ({100 * (acc - r['accuracy']):+.2f})")
            pt.add_row(escape(Path(r["model"]).stem), _fmt(r["accuracy"], ".4f"), *cells)
        console.print(pt)
    refs = sorted({Path(r["reference"]).name for r in doc["rows"] if r["reference"]})
    if doc["data"]:
        found = escape(", ".join(refs)) if refs else "none (no fp32 sibling found; pass --reference)"
        console.print(f"drift reference: {found}")
    load = host["load_average"]
    flags = host.get("cpu_flags")
    dot = {True: "yes", False: "no", None: "unknown"}[host.get("int8_dot_product")]
    console.print(f"host: {escape(host['cpu'])}, {host['cores']} cores ({host['usable_cores']} usable), "
                  f"{host['os']} ({host['arch']}); python {host['python']}, numpy {host['numpy']}, "
                  f"{host['interpreter']}" + (f"; load average {load[0]:.2f}" if load else ""))
    flags_text = "unknown" if flags is None else " ".join(flags) or f"none of {', '.join(CPU_FLAGS)}"
    console.print(f"cpu flags: {flags_text} (int8 dot product: {dot})")
    console.print(f"latency: {doc['method']['latency']}")
    if doc["data"]:
        console.print(f"throughput: {doc['method']['throughput']}")
        floors = ", ".join(f"{f['throughput_ips']:,.0f} img/s at {f['input_size']} px (passes: "
                           + ", ".join(f"{v:,.0f}" for v in f["passes_ips"]) + ")" for f in doc.get("floor", []))
        console.print(f"floor: {floors} = read + decode + preprocess alone, same workers, measured around each "
                      "model; × floor = its img/s / the faster floor pass around it")
    rec = doc.get("recommendation")
    if rec:
        name = escape(Path(rec["model"]).name)
        if rec["by"] == "throughput":
            why = (f"{rec['throughput_ips']:,.0f} img/s, {rec['floor_ratio']:.2f} × floor, accuracy {rec['accuracy']:.4f}: "
                   f"the fastest within {100 * rec['tolerance']:g} points of the most accurate, "
                   f"{escape(Path(rec['most_accurate']).stem)} ({rec['best_accuracy']:.4f})")
        else:
            why = f"{rec['latency_ms_p50']:.3f} ms/img: the lowest batch-1 latency (no --data, so accuracy not weighed)"
        console.print(f"[bold]use on this host: {name}[/] ({why})")


def write_csv(doc: dict, path: str | os.PathLike) -> None:
    """One line per model: the contract keys, then the extra figures and one accuracy column per perturbation."""
    from edgedetect.files import atomic_write_text

    extra = ["reference", "mean_abs_dp", "n_images", "input_size", "io", "threshold", "arch", "macs_per_image",
             "floor_ips", "floor_ratio"]
    pert_cols = [f"accuracy_{name}" for name in doc["perturbations"]]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*CONTRACT_KEYS, *extra, *pert_cols])
    for r in doc["rows"]:
        pert = [r["perturbations"][name]["accuracy"] for name in doc["perturbations"]]
        values = [*(r[k] for k in CONTRACT_KEYS), *(r[k] for k in extra), *pert]
        writer.writerow(["" if v is None else v for v in values])
    atomic_write_text(path, buf.getvalue())


def plot_bench(doc: dict, path: str | os.PathLike) -> None:
    """Latency (x) against accuracy (y; size when there is no data), one labelled bubble per model, area ~ size."""
    from edgedetect.plots import new_figure, place_labels, require_matplotlib, save_figure

    require_matplotlib("--plot")
    rows = doc["rows"]
    with_acc = all(r["accuracy"] is not None for r in rows)
    x = np.array([r["latency_ms_p50"] for r in rows])
    y = np.array([100 * r["accuracy"] if with_acc else r["size_bytes"] / 1e6 for r in rows])
    size_mb = np.array([r["size_bytes"] / 1e6 for r in rows])
    area = 80 + 1200 * size_mb / max(size_mb.max(), 1e-9)
    fig = new_figure((8, 5.5), 120)
    ax = fig.add_subplot()
    for r, xi, yi, a in zip(rows, x, y, area):
        ax.scatter(xi, yi, s=a, alpha=0.55, color=color_of(r["precision"]), edgecolor="black", lw=0.6)
    if x.max() / max(x.min(), 1e-9) > 20:
        ax.set_xscale("log")
        ax.set_xlim(x.min() / 1.5, x.max() * 3)
    else:
        ax.set_xlim(0, x.max() * 1.35)
    pad = (y.max() - y.min()) * 0.15 or 1.0
    ax.set_ylim(y.min() - pad, y.max() + pad)
    labels = []
    for r, mb in zip(rows, size_mb):
        label = f"{Path(r['model']).stem}\n{mb:.2f} MB"
        if r["throughput_ips"]:
            label += f", {r['throughput_ips']:,.0f} img/s"
        labels.append(label)
    ax.set_xlabel("latency, batch 1 (ms per image, median)")
    ax.set_ylabel("accuracy (%)" if with_acc else "size (MB)")
    handles = [ax.scatter([], [], color=c, alpha=0.55, edgecolor="black", lw=0.6, label=k)
               for k, c in ((p.name, p.color) for p in TABLE) if any(r["precision"] == k for r in rows)]
    legend = None
    if handles:
        legend = ax.legend(handles=handles, title="precision (bubble area ~ size)", fontsize=8, title_fontsize=8,
                           loc="lower right")
    host = doc["host"]
    data = Path(doc["data"]).name if doc["data"] else "no data"
    ax.set_title(f"edgedetect bench · {data} ({doc['n_images']:,} images)\n{host['cpu']}, {host['interpreter']}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # Labels are placed after the layout is final, each where it covers no other label, bubble or the legend
    # (models close together, such as a pair's fp16 and fp32, used to print on top of each other).
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72
    anchors = [tuple(ax.transData.transform((xi, yi))) for xi, yi in zip(x, y)]
    radii = [np.sqrt(a) / 2 * px_per_pt for a in area]
    texts = [ax.annotate(label, (xi, yi), xytext=(0, 0), textcoords="offset points", ha="center", va="center",
                         fontsize=8) for label, xi, yi in zip(labels, x, y)]
    sizes = [(t.get_window_extent(renderer).width, t.get_window_extent(renderer).height) for t in texts]
    obstacles = [tuple(legend.get_window_extent(renderer).extents)] if legend is not None else []
    offsets = place_labels(anchors, sizes, radii, tuple(ax.get_window_extent(renderer).extents), obstacles)
    for t in texts:  # measured; drawn again below at their places
        t.remove()
    for label, xi, yi, (dx, dy), rad in zip(labels, x, y, offsets, radii):
        ax.annotate(label, (xi, yi), xytext=(dx / px_per_pt, dy / px_per_pt), textcoords="offset points",
                    ha="center", va="center", fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "#777777", "lw": 0.6, "shrinkA": 0,
                                "shrinkB": rad / px_per_pt})
    save_figure(fig, path)
