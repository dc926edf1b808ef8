"""`edgedetect explain`: where a model's evidence is, as a picture per image (and numbers with --json).

A .tflite is explained with the interpreter alone (occlusion, or per-crop scores for native-resolution models);
a .keras model with Grad-CAM, which needs the [train] extra and is imported only then.
"""

from __future__ import annotations

import json
import statistics
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgedetect.commands import output
from edgedetect.commands.options import (force_option, images_argument, json_option,
                                         model_option, threads_option, threshold_option)
from edgedetect.errors import EdgeDetectError


class Fill(str, Enum):
    blur = "blur"
    mean = "mean"


def explain(
    paths: List[str] = images_argument("IMAGE", "Image files, folders (searched recursively) or quoted glob patterns."),
    model: Optional[Path] = model_option("A .tflite model (explained with the interpreter alone) or a .keras model "
                                         "(Grad-CAM; needs the \\[train] extra) \\[default: the shipped model]."),
    out: Path = typer.Option(Path("explain"), "--out", "-o", file_okay=False,
                             help="Folder for the pictures, one <image stem>.png per image; created if missing."),
    json_out: bool = json_option("Print one JSON document with each map's numbers."),
    patch: Optional[int] = typer.Option(None, "--patch", min=1, show_default=False,
                                        help="Occlusion square side in model-input pixels \\[default: a quarter of the input: 8 at 32 px]."),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, show_default=False,
                                         help="Occlusion step in pixels \\[default: a quarter of the patch: 2 at 32 px]."),
    threshold: Optional[float] = threshold_option("the model's threshold"),
    fill: Fill = typer.Option(Fill.blur, "--fill", help="What replaces an occluded square: a blurred copy of it, or the image's mean colour."),
    threads: Optional[int] = threads_option(),
    force: bool = force_option("Overwrite any file in the way in --out (pictures an earlier explain wrote are replaced without it)."),
) -> None:
    """Show where the model's evidence is: a picture per image (the image, the map over it, label and p_fake).

    Method for .tflite models (interpreter only, fp32 and int8 alike): occlusion. Each 8x8 square of the
    32x32 model input, every 2 px, is replaced by a blurred copy of itself; the original and all 169 occluded
    copies run as ONE batch: 170 images, 1 invoke per image (default int8 model: ~50 ms per image, measured on a
    busy 2-core VM; docs/explain.md has every shipped model).
    The map is the drop in p_fake when a square is blurred away: red = evidence for FAKE, blue = for REAL.
    Native-resolution models (the shipped photo model, which decides for images of 96 px and more when no --model
    is given): the map is each 96-px crop's p_fake over the image, up to 16 crops, 1 invoke (no extra work).
    .keras models: Grad-CAM on the last convolution (needs the \\[train] extra).

    Exit 0: every image explained; 1: some failed; 2: usage error.
    """
    from edgedetect.explain import explain_files

    explainer, model_line, method_line, model_path = _explainer(model, patch, stride, fill.value, threads, threshold)
    results = explain_files(explainer, paths, out_dir=out, model_line=model_line, force=force)
    ok = [r for r in results if r["error"] is None]
    failed = [r for r in results if r["error"] is not None]
    ms = [r["ms"] for r in ok]
    if json_out:
        doc = {"model": [str(p) for p in model_path] if isinstance(model_path, list) else str(model_path),
               "model_description": model_line, "method": method_line,
               "threshold": explainer.threshold, "n_images": len(results), "n_failed": len(failed),
               "ms_median": statistics.median(ms) if ms else None, "out": str(out), "results": results}
        output.echo(_dumps(doc))
    else:
        _print_human(ok, failed, model_line, method_line, ms)
    if failed:
        raise typer.Exit(1)


def _dumps(doc: dict) -> str:
    """``doc`` as indented JSON with each map row on one line (a 32x32 map is 32 lines, not 1,100)."""
    import re
    import uuid

    token = uuid.uuid4().hex  # a placeholder no path or message can contain
    rows: list[str] = []
    out = []
    for r in doc["results"]:
        if r.get("map"):
            start = len(rows)
            rows.extend(json.dumps(v, separators=(",", ":")) for v in r["map"]["values"])
            marks = [f"{token}:{start + i}" for i in range(len(r["map"]["values"]))]
            r = {**r, "map": {**r["map"], "values": marks}}
        out.append(r)
    text = json.dumps({**doc, "results": out}, indent=1)
    return re.sub(f'"{token}:(\\d+)"', lambda m: rows[int(m.group(1))], text)


def _explainer(model: Optional[Path], patch, stride, fill: str, threads, threshold):
    """The backend for the model's type, chosen here at the edge: .keras -> training.gradcam (lazy import)."""
    if model is not None and model.suffix.lower() == ".keras":
        if patch is not None or stride is not None or fill != "blur":
            raise EdgeDetectError("--patch, --stride and --fill set the occlusion method of .tflite models; a .keras "
                                  "model is explained with Grad-CAM, which takes none of them")
        try:
            from training.gradcam import GradCamExplainer
        except ImportError as e:
            raise EdgeDetectError(f"{model}: explaining a .keras model (Grad-CAM) needs TensorFlow and Keras ({e}); "
                                  "pip install 'edgedetect[train]', or explain its .tflite instead") from None
        explainer = GradCamExplainer(model, threshold=threshold)
        return explainer, explainer.description(), explainer.method_line(), model

    from edgedetect.explain import AutoExplainer, Explainer
    from edgedetect.predict import AutoModel, load_default_models, model_description
    from edgedetect.runtime import Classifier

    clf = Classifier(model, threads=threads) if model is not None else load_default_models(threads)
    if isinstance(clf, AutoModel):  # the shipped pair: each image explained by the model predict picks for it
        explainer = AutoExplainer(clf, threshold=threshold)
        if patch is not None or stride is not None or fill != "blur":
            explainer.explainers[id(clf.small)] = Explainer(clf.small, patch=patch, stride=stride, fill=fill,
                                                            threshold=threshold)
        return explainer, model_description(clf), explainer.method_line(), [clf.small.path, clf.photo.path]
    explainer = Explainer(clf, patch=patch, stride=stride, fill=fill, threshold=threshold)
    return explainer, model_description(clf), explainer.method_line(), clf.path


def _print_human(ok: list, failed: list, model_line: str, method_line: str, ms: list) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = output.stdout()
    if ok:
        table = Table(box=None, header_style="bold")
        for name, justify in (("path", "left"), ("label", "left"), ("p_fake", "right"), ("threshold", "right"),
                              ("peak (x, y)", "right"), ("ms", "right"), ("picture", "left")):
            table.add_column(name, justify=justify, overflow="fold")
        for r in ok:
            color = "red" if r["label"] == "FAKE" else "green"
            x, y = r["map"]["peak"]["image_xy"]
            table.add_row(escape(r["path"]), f"[{color}]{r['label']}[/]", f"{r['p_fake']:.4f}", f"{r['threshold']:.4f}",
                          f"{x:.0f}, {y:.0f}", f"{r['ms']:.0f}", escape(str(r["png"])))
        console.print(table)
    timing = f" · median {statistics.median(ms):.0f} ms per image" if ms else ""
    console.print(f"{len(ok)} explained, {len(failed)} failed · model {escape(model_line)} · "
                  f"{escape(method_line)}{timing}", highlight=False)
    if failed:
        err = output.stderr()
        err.print(f"[bold red]{len(failed)} failed:[/]")
        for r in failed:
            err.print(f"  {escape(r['path'])}: {escape(r['error'])}", highlight=False, soft_wrap=True)
