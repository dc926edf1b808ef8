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

import sys
from pathlib import Path

from edgedetect.errors import EdgeDetectError
from training.run import CONFIG, ENSEMBLE_ARCH, METRICS, Run, library_versions


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
    from edgedetect.data import load_dataset
    from training.final_metrics import final_metrics
    from training.keras_model import load_keras
    from training.loop import save_model
    from training.model_spec import get_spec

    if len(runs) < 2:
        raise EdgeDetectError(f"an ensemble needs two or more runs; received {len(runs)}")
    member_runs = [Run.open(r, need_model=True) for r in runs]
    configs = [run.settings for run in member_runs]
    carve = {(c["data"], c["val_fraction"], c["seed"]) for c in configs}
    if len(carve) != 1:
        raise EdgeDetectError("the runs differ in data, --val-fraction or --seed "
                              f"({sorted(carve)}); their val splits would overlap other members' training data")
    out = Run(out)
    if out.best_model.exists() and not force:
        raise EdgeDetectError(f"{out.path} already holds a model; pass --force to replace it or choose another --out")
    out.path.mkdir(parents=True, exist_ok=True)

    members = [load_keras(run.best_model) for run in member_runs]
    archs = [c["arch"] for c in configs]
    model = build_ensemble(members, name="ensemble_" + "_".join(archs))
    save_model(model, out.best_model)

    base = configs[0]
    img_size = int(model.input_shape[1])
    dataset = load_dataset(base["data"], img_size, val_fraction=base["val_fraction"], seed=base["seed"])
    metrics = final_metrics(model, dataset)
    member_dirs = [str(run.path) for run in member_runs]
    metrics.update(params=int(model.count_params()), members=member_dirs)
    described = []
    for c in configs:
        upscale = " (bilinear upscale in the graph)" if c["img_size"] > img_size else ""
        described.append(f"{c['arch']} at {c['img_size']} px{upscale}: {get_spec(c['arch']).preprocessing}")
    in_graph = " | ".join(described)
    config = {
        "config": {"arch": ENSEMBLE_ARCH, "member_archs": archs, "data": base["data"], "img_size": img_size,
                   "val_fraction": base["val_fraction"], "seed": base["seed"], "members": member_dirs},
        "preprocessing": f"mean of the members' p_fake; each normalises inside its graph ({in_graph})",
        "dataset": dataset.describe(),
        "params": int(model.count_params()),
        "versions": library_versions(),
        "command": sys.argv,
    }
    out.write(CONFIG, config)
    out.write(METRICS, metrics)
    out.point_latest()
    return out.path
