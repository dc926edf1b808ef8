"""Average the p_fake of several trained models in one graph, so an ensemble converts and ships as one file.

Members must come from runs on the same data with the same val carve (``val_fraction`` and ``seed``), so the
ensemble's threshold is chosen on images none of them trained on. They may take different input sizes: the
ensemble takes the smallest, and a member trained larger (say MobileNetV3 at 64 px on CIFAKE's 32-px images)
gets its input upscaled in the graph with bilinear resizing, which matches the Pillow upscale it saw in
training within one grey level. (For photos larger than every member that member now sees a 32-px image
upscaled rather than the photo resized once: fine for CIFAKE-like data, a change for other data.)
The output folder looks like a training run (best.keras, config.json, metrics.json), so ``edgedetect convert``
and ``evaluate`` treat it like one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_text


def _run_of(path: Path) -> Path:
    run = path if path.is_dir() else path.parent
    for name in ("best.keras", "config.json"):
        if not (run / name).is_file():
            raise EdgeDetectError(f"{path}: not a training run (no {name} in {run}); name run folders made by `edgedetect train`")
    return run


def build_ensemble(members: list, name: str = "ensemble"):
    """A Keras model whose output is the mean of the members' p_fake (each member keeps its own in-graph preprocessing)."""
    import keras

    shapes = [tuple(m.input_shape[1:]) for m in members]
    if any(len(s) != 3 or s[0] != s[1] or s[2] != 3 for s in shapes):
        raise EdgeDetectError(f"ensemble members must take square RGB images; they take {sorted(set(shapes))}")
    size = min(s[0] for s in shapes)
    inputs = keras.Input((size, size, 3), name="image")
    outputs = []
    for i, (m, shape) in enumerate(zip(members, shapes)):
        x = inputs
        if shape[0] != size:
            x = keras.layers.Resizing(shape[0], shape[0], interpolation="bilinear", name=f"member{i}_upscale")(x)
        outputs.append(keras.Model(m.inputs, m.output, name=f"member{i}_{m.name}")(x))
    p_fake = keras.layers.Average(name="p_fake")(outputs)
    return keras.Model(inputs, p_fake, name=name)


def make_ensemble(runs: list[str], out: str, force: bool = False) -> Path:
    """Write an ensemble of the ``best.keras`` of each run in ``runs`` to the run-like folder ``out``.

    Raises:
        EdgeDetectError: fewer than two runs, runs on different data or val carves, or an existing ``out``.
    """
    import keras

    from edgedetect.data import load_dataset
    from training.model_spec import get_spec
    from training.train import _final_metrics, _point_latest, _versions

    if len(runs) < 2:
        raise EdgeDetectError(f"an ensemble needs two or more runs; received {len(runs)}")
    run_dirs = [_run_of(Path(r)) for r in runs]
    configs = [json.loads((r / "config.json").read_text())["config"] for r in run_dirs]
    carve = {(c["data"], c["val_fraction"], c["seed"]) for c in configs}
    if len(carve) != 1:
        raise EdgeDetectError("the runs differ in data, --val-fraction or --seed "
                              f"({sorted(carve)}); their val splits would overlap other members' training data")
    out_dir = Path(out)
    if (out_dir / "best.keras").exists() and not force:
        raise EdgeDetectError(f"{out_dir} already holds a model; pass --force to replace it or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)

    members = [keras.saving.load_model(r / "best.keras", safe_mode=True) for r in run_dirs]
    archs = [c["arch"] for c in configs]
    model = build_ensemble(members, name="ensemble_" + "_".join(archs))
    tmp = out_dir / ".best.tmp.keras"
    model.save(tmp)
    tmp.replace(out_dir / "best.keras")

    base = configs[0]
    img_size = int(model.input_shape[1])
    dataset = load_dataset(base["data"], img_size, val_fraction=base["val_fraction"], seed=base["seed"])
    metrics = _final_metrics(model, dataset, None)
    metrics.update(params=int(model.count_params()), members=[str(r) for r in run_dirs])
    described = []
    for c in configs:
        upscale = " (bilinear upscale in the graph)" if c["img_size"] > img_size else ""
        described.append(f"{c['arch']} at {c['img_size']} px{upscale}: {get_spec(c['arch']).preprocessing}")
    in_graph = " | ".join(described)
    config = {
        "config": {"arch": "ensemble(" + "+".join(archs) + ")", "data": base["data"], "img_size": img_size,
                   "val_fraction": base["val_fraction"], "seed": base["seed"], "members": [str(r) for r in run_dirs]},
        "preprocessing": f"mean of the members' p_fake; each normalises inside its graph ({in_graph})",
        "dataset": dataset.describe(),
        "params": int(model.count_params()),
        "versions": _versions(),
        "command": sys.argv,
    }
    atomic_write_text(out_dir / "config.json", json.dumps(config, indent=1))
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1))
    _point_latest(out_dir)
    return out_dir
