"""The metadata a converted model carries: input size, preprocessing (what the graph does inside), threshold,
precision, provenance from its training run (:class:`training.run.Run`), metrics and the calibration set."""

from __future__ import annotations

from typing import Optional

from edgedetect import LABELS
from edgedetect.metadata import ModelMetadata
from edgedetect.preprocess import PREPROCESSING
from conversion.source import Source, sha256_of
from training.run import ENSEMBLE_ARCH, Run

UNKNOWN_ARCH = "unknown"


def model_arch(run: Optional[Run]) -> str:
    """The registry name of the architecture, from the training run's config (``unknown`` without a run)."""
    return (run.arch if run is not None else None) or UNKNOWN_ARCH


def run_front(run: Optional[Run]):
    """The front end the run trained behind (a ``training.model_spec.Front``), or None (none, or not from a run)."""
    name = run.settings.get("front", "none") if run is not None else "none"
    if name == "none":
        return None
    from training.model_spec import get_front

    return get_front(name)


def build_metadata(src: Source, run: Optional[Run], precision: str, io: str, threshold: float,
                   calibration: Optional[dict]) -> ModelMetadata:
    """The metadata of the ``precision`` file converted from ``src``."""
    arch = model_arch(run)
    run = run if run is not None else Run(src.path.parent)  # not from a run: no settings, metrics or config
    preprocessing = dict(PREPROCESSING)
    in_graph = run.config.get("preprocessing") or run.settings.get("preprocessing")
    if not in_graph and arch not in (UNKNOWN_ARCH, ENSEMBLE_ARCH):
        from training.model_spec import get_spec

        in_graph = get_spec(arch).preprocessing
    if in_graph:
        preprocessing["normalisation"] = f"inside the model graph: {in_graph}"
    front = run_front(run)
    if front is not None:
        preprocessing["front_end"] = f"inside the model graph: {front.description}"
    if run.settings.get("preprocess") == "crops":
        from edgedetect.crops import CROP_ALIGN

        preprocessing.update(
            mode="crops", resize=None, max_crops=int(run.metrics.get("max_crops", run.settings.get("max_crops", 16))),
            combine=run.metrics.get("combine", "mean"),
            crops=(f"{src.input_size}-px crops of the image at its own resolution (never resized) on an even grid "
                   f"covering it, offsets multiples of {CROP_ALIGN}, at most max_crops; p_fake = combine of the crops' "
                   "p_fake (edgedetect.crops)"),
            small_images=f"a side under {src.input_size} px is mirror-padded to it and the result carries a warning")
    else:
        preprocessing["mode"] = "resize"
    training, metrics = {}, {}
    if run.config or run.metrics:
        command = run.config.get("command")
        training = {"run": str(run.path), "data": run.settings.get("data"),
                    "command": " ".join(command) if isinstance(command, list) else command,
                    "dataset": run.config.get("dataset"), "settings": run.settings,
                    "versions": run.config.get("versions")}
        if run.member_archs:
            training["member_archs"] = run.member_archs
        for key in ("best_epoch", "epochs_run", "train_seconds", "params"):
            if key in run.metrics:
                training[key] = run.metrics[key]
        dataset = run.config.get("dataset") or {}
        if "image_sizes" in dataset:  # what the model saw; the runtime warns far outside it
            training["image_sizes"] = dataset["image_sizes"]
            training["sources"] = list(dataset.get("counts", {}).get("train", {}))
        metrics = run.labelled_metrics()
    return ModelMetadata(
        input_size=src.input_size, precision=precision, threshold=float(threshold), labels=list(LABELS), io=io,
        preprocessing=preprocessing, arch=arch, training=training, metrics=metrics,
        source_model={"path": str(src.path.resolve()), "sha256": sha256_of(src.path), "format": src.kind},
        calibration=calibration,
    )
