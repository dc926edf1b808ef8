"""Fit a registered architecture on an image dataset; checkpointed, resumable, backend-agnostic Keras 3.

:func:`train` starts a run and :func:`resume` continues one; both write the run folder described in
:mod:`training.run`. The loop uses only Keras APIs (in-memory uint8 arrays fed through a ``keras.utils.PyDataset``,
see :mod:`training.loop`), so the same code trains under the TensorFlow, JAX or PyTorch backend. The data comes
from :mod:`training.data_prep`, the figures and threshold in ``metrics.json`` from :mod:`training.final_metrics`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgedetect.errors import EdgeDetectError
from training.run import CONFIG, HISTORY, LAST, METRICS, RUNS_DIR, STATE, Run, library_versions


@dataclass
class TrainConfig:
    """Everything that defines a training run (written to ``config.json``)."""

    arch: str
    data: str | list  # one dataset; with preprocess="crops", a list of sources (see training.native_data)
    img_size: int | None = None  # the input side: the resize target, or the crop side with preprocess="crops"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weights: str | None = None  # None, "imagenet" or a file
    trainable_layers: int | None = None
    augment: bool = True
    out: str | None = None
    seed: int = 0  # the val carve and --limit subset; also the init seed unless init_seed is given
    mixed_precision: bool = False
    val_fraction: float = 0.1
    patience: int = 8
    dropout: float = 0.2
    weight_decay: float = 1e-4
    limit: int | None = None  # use at most this many training images (quick experiments, tests)
    teacher: str | None = None  # a .keras/.tflite model whose p_fake the run also learns from (distillation)
    init_seed: int | None = None  # weights, data order, augmentation, dropout [default: seed]
    preprocess: str = "resize"  # "resize" (whole image to img_size) or "crops" (native-resolution crops)
    front: str = "none"  # fixed in-graph signal processing before the backbone (training.model_spec.FRONTS)
    steps_per_epoch: int | None = None  # crops: batches per epoch [default: about one crop per image]
    max_crops: int = 16  # crops: crops per image at evaluation (and in the exported model's metadata)
    jpeg_prob: float = 0.5  # crops: share of training crops re-encoded as JPEG at a random quality
    webp_prob: float = 0.4  # crops: share of training crops re-encoded as lossy WebP instead (jpeg + webp <= 1)
    min_quality: int = 60  # crops: re-encoding qualities are drawn from U[min_quality, 100]
    synth_fakes: float = 0.0  # crops: share of FAKE samples made from REAL crops by 2x upsampling (AutoGAN-like)
    jitter: float = 0.0  # crops: colour jitter strength (brightness, contrast, saturation), both classes alike
    mask_prob: float = 0.0  # crops: share of training crops with random 16-px squares blanked (SAFE's RandomMask)
    shuffle_prob: float = 0.0  # crops: share of training crops whose 16-px squares are permuted (content scrambled)


def default_run_dir(arch: str) -> Path:
    return RUNS_DIR / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train ``cfg.arch`` on ``cfg.data`` in a new run folder; returns it.

    Args:
        cfg: the settings (written to the run's config.json).
        progress: show the per-epoch progress bar.

    Raises:
        EdgeDetectError: bad data, unknown architecture, unavailable weights, a folder that already holds a run.
    """
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg.arch)
    if (run_dir / STATE).exists():
        raise EdgeDetectError(f"{run_dir} already holds a run; use --resume to continue it or pick another --out")
    state = {"epoch": 0, "best_val_auc": -1.0, "best_epoch": 0, "wait": 0, "train_seconds": 0.0}
    return _fit(cfg, Run(run_dir), state, history={}, resuming=False, progress=progress)


def resume(run_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Continue the run in ``run_dir`` from its last.keras, with the settings in its config.json; returns it.

    Raises:
        EdgeDetectError: nothing to resume there (no last.keras/state.json), or a corrupt run file.
    """
    run_dir = Path(run_dir)
    if not (run_dir / LAST).is_file() or not (run_dir / STATE).is_file():
        raise EdgeDetectError(f"{run_dir}: nothing to resume (no last.keras/state.json); start a new run instead")
    run = Run.open(run_dir)
    settings = dict(run.settings)
    settings.pop("extra", None)  # an unused field of runs written before it was removed
    settings.setdefault("webp_prob", 0.0)  # runs from before WebP re-encoding existed had none
    cfg = TrainConfig(**settings)
    state = run.read(STATE)
    state.setdefault("train_seconds", 0.0)  # runs from before it was counted per epoch
    return _fit(cfg, run, state, history=run.read(HISTORY), resuming=True, progress=progress)


def _fit(cfg: TrainConfig, run: Run, state: dict, history: dict, resuming: bool, progress: bool) -> Path:
    import keras
    from rich.console import Console

    from training import loop
    from training.data_prep import NativeData, resize_data
    from training.final_metrics import final_metrics, native_final_metrics
    from training.keras_model import load_keras
    from training.model_spec import build_model, get_spec, set_trainable_layers

    console = Console(stderr=True, soft_wrap=True)
    run_dir, previous = run.path, run.config
    spec = get_spec(cfg.arch)
    cfg.img_size = cfg.img_size or spec.default_img_size
    init_seed = cfg.seed if cfg.init_seed is None else cfg.init_seed
    if cfg.preprocess == "crops":
        if cfg.teacher or cfg.limit:
            raise EdgeDetectError("--teacher and --limit are not supported with --preprocess crops")
        dataset = NativeData(cfg, init_seed, progress, console)
        train_seq, val_seq = dataset.train_seq, dataset.val_seq
    elif cfg.preprocess != "resize":
        raise EdgeDetectError(f"--preprocess {cfg.preprocess}: valid: resize, crops")
    else:
        dataset, train_seq, val_seq = resize_data(cfg, init_seed, progress, console, run_dir, resuming)
    keras.utils.set_random_seed(init_seed)
    scope, device = loop.setup_devices(cfg.mixed_precision, console)

    with scope if scope is not None else contextlib.nullcontext():
        if resuming:
            model = load_keras(run_dir / LAST)  # importing training.loop registered the metric classes it names
            console.print(f"resuming {run_dir} at epoch {state['epoch'] + 1}/{cfg.epochs}")
        else:
            model = build_model(cfg.arch, cfg.img_size, cfg.weights, cfg.dropout, front=cfg.front)
            set_trainable_layers(model, cfg.trainable_layers)
            schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=cfg.epochs * len(train_seq), alpha=0.01)
            model.compile(
                optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
                loss="binary_crossentropy",
                metrics=loop.label_metrics(),
            )
    config_doc = {"config": asdict(cfg), "dataset": dataset.describe(), "params": model.count_params(),
                  "versions": library_versions(), "device": device, "command": previous.get("command", sys.argv)}
    if resuming:  # keep the command that started the run: it is the one that reproduces it
        config_doc["resumed_with"] = previous.get("resumed_with", []) + [sys.argv]
    run.write(CONFIG, config_doc)
    run.point_latest()

    with loop.Progress(cfg.epochs, enabled=progress) as bar:
        checkpoint = loop.RunCheckpoint(run_dir, state, history, cfg.patience, init_seed, train_seq, bar)
        if state["epoch"] < cfg.epochs and state["wait"] < cfg.patience:
            model.fit(train_seq, validation_data=val_seq, epochs=cfg.epochs, initial_epoch=state["epoch"],
                      callbacks=[checkpoint], verbose=0, shuffle=False)

    if not run.best_model.is_file():  # val AUC was never a number (e.g. NaN losses)
        raise EdgeDetectError(f"{run_dir}: no epoch produced a valid val AUC, so there is no best.keras; "
                              "check the data and try a lower --lr")
    best = load_keras(run.best_model)
    if isinstance(dataset, NativeData):
        metrics = native_final_metrics(best, dataset.val, cfg.img_size, cfg.max_crops)
    else:
        metrics = final_metrics(best, dataset)
    metrics.update(best_epoch=state["best_epoch"], epochs_run=state["epoch"], train_seconds=round(state["train_seconds"], 1),
                   params=int(best.count_params()))
    run.write(METRICS, metrics)
    if not loop.plot_history(history, run_dir / "curves.png"):
        console.print("curves.png not drawn: matplotlib is not installed (pip install 'edgedetect[plot]'); "
                      "the same figures are in history.json")
    _summary(console, run_dir, metrics)
    return run_dir


def _summary(console, run_dir: Path, metrics: dict) -> None:
    val = metrics["val"]
    console.print(f"\n[bold]done[/]: {run_dir}  best epoch {metrics['best_epoch']}/{metrics['epochs_run']}, "
                  f"{metrics['train_seconds'] / 60:.1f} min")
    console.print(f"val  accuracy {val['accuracy']:.4f}  F1 {val['f1']:.4f}  AUC {val['roc_auc']:.4f}  "
                  f"(threshold {metrics['threshold']:.3f}, {metrics['threshold_method']})")
    if "test" in metrics:
        t = metrics["test"]
        console.print(f"test accuracy {t['accuracy']:.4f}  F1 {t['f1']:.4f}  AUC {t['roc_auc']:.4f}")
    console.print(f"next: edgedetect convert {run_dir / 'best.keras'} --quant int8")
