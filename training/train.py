"""Fit a registered architecture on an image dataset; checkpointed, resumable, backend-agnostic Keras 3.

The loop uses only Keras APIs (in-memory uint8 arrays fed through a ``keras.utils.PyDataset``), so the same
code trains under the TensorFlow, JAX or PyTorch backend. A run directory holds::

    best.keras      best model by validation AUC, without training state (loads with safe_mode=True anywhere)
    last.keras      last epoch, with optimizer state (what --resume continues from)
    teacher.npy     with --teacher: the teacher's p_fake on every training image (the distillation targets)
    state.json      epoch, best AUC, epochs without improvement
    config.json     every setting, the dataset summary and library versions
    history.json    per-epoch train/val loss, accuracy, AUC and learning rate
    metrics.json    the best model on val (and test, when the data has it) with the threshold chosen on val
    curves.png      loss, accuracy and AUC curves
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_text

RUNS_DIR = Path("runs")
LATEST = "latest.json"


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
    extra: dict = field(default_factory=dict)
    preprocess: str = "resize"  # "resize" (whole image to img_size) or "crops" (native-resolution crops)
    front: str = "none"  # fixed in-graph signal processing before the backbone (training.model_spec.FRONTS)
    steps_per_epoch: int | None = None  # crops: batches per epoch [default: about one crop per image]
    max_crops: int = 16  # crops: crops per image at evaluation (and in the exported model's metadata)
    jpeg_prob: float = 0.5  # crops: share of training crops re-encoded as JPEG at a random quality
    synth_fakes: float = 0.0  # crops: share of FAKE samples made from REAL crops by 2x upsampling (AutoGAN-like)


def _sequence_class():
    import keras

    class _ArraySequence(keras.utils.PyDataset):
        """Batches of uint8 arrays as float32 0-255, shuffled per epoch; flips and integer shifts when augmenting.

        Augmentation never interpolates: horizontal flips and shifts by whole pixels (reflect-padded) keep every
        pixel value, so the high-frequency traces that tell generated images apart survive.
        """

        def __init__(self, x, y, batch_size, seed, augment, shuffle, shift=4):
            super().__init__()
            self.x, self.y = x, y.astype("float32")
            self.batch_size, self.seed, self.augment, self.shuffle, self.shift = batch_size, seed, augment, shuffle, shift
            self.set_epoch(0)

        def set_epoch(self, epoch):
            rng = np.random.default_rng([self.seed, epoch])
            self.order = rng.permutation(len(self.y)) if self.shuffle else np.arange(len(self.y))
            self.rng_seed = [self.seed, epoch, 1]

        def __len__(self):
            return math.ceil(len(self.y) / self.batch_size)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * self.batch_size : (i + 1) * self.batch_size])
            x = self.x[idx]
            if self.augment:
                x = _augment(x, np.random.default_rng(self.rng_seed + [i]), self.shift)
            return x.astype("float32"), self.y[idx]

    return _ArraySequence


def _augment(x: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    n, h, w, _ = x.shape
    flip = rng.random(n) < 0.5
    x = x.copy()
    x[flip] = x[flip, :, ::-1]
    padded = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
    dy, dx = rng.integers(0, 2 * shift + 1, (2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


# With --teacher the target of each training image is the average of its label and the teacher's p_fake, kept off
# exactly 0.5 by clipping p_fake, so the label is the target thresholded at 0.5 (what the metrics below score).
TEACHER_WEIGHT = 0.5
_TEACHER_CLIP = 1e-4


def distillation_targets(y: np.ndarray, p_teacher: np.ndarray) -> np.ndarray:
    """Soft targets ``(1 - w) * label + w * p_teacher`` (w = TEACHER_WEIGHT); > 0.5 exactly where the label is FAKE."""
    p = np.clip(np.asarray(p_teacher, np.float64), _TEACHER_CLIP, 1 - _TEACHER_CLIP)
    return ((1 - TEACHER_WEIGHT) * y + TEACHER_WEIGHT * p).astype("float32")


@functools.cache
def _metric_classes():
    """Accuracy and AUC against the label: the target thresholded at 0.5 (a no-op on hard labels).

    Registered, so a resumed run's last.keras loads; best.keras is saved without them (see _save_model).
    """
    import keras

    def hard(y_true):
        return keras.ops.cast(keras.ops.greater(y_true, 0.5), "float32")

    @keras.saving.register_keras_serializable(package="edgedetect")
    class LabelAccuracy(keras.metrics.BinaryAccuracy):
        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(hard(y_true), y_pred, sample_weight)

    @keras.saving.register_keras_serializable(package="edgedetect")
    class LabelAUC(keras.metrics.AUC):
        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(hard(y_true), y_pred, sample_weight)

    return LabelAccuracy, LabelAUC


def _metrics() -> list:
    accuracy, auc = _metric_classes()
    return [accuracy(name="accuracy"), auc(name="auc")]


def teacher_predictions(teacher: str, x: np.ndarray, cfg: "TrainConfig", console) -> np.ndarray:
    """The teacher's p_fake on the uint8 images ``x`` (a .keras or .tflite teacher, at the run's input size)."""
    from edgedetect.evaluate import Scorer

    scorer = Scorer(Path(teacher), threads=None)
    if scorer.input_size != cfg.img_size:
        raise EdgeDetectError(f"--teacher {teacher}: takes {scorer.input_size} px images, the run trains at "
                              f"{cfg.img_size} px; pass --img-size {scorer.input_size} or another teacher")
    known = {k: scorer.training.get(k) for k in ("data", "val_fraction", "seed")}
    if known["data"] is not None and (Path(str(known["data"])).resolve(), known["val_fraction"], known["seed"]) != (
            Path(cfg.data).resolve(), cfg.val_fraction, cfg.seed):
        console.print(f"[yellow]warning:[/] the teacher was trained with another data/val carve ({known}); it may "
                      "have seen this run's val images, which makes val figures optimistic (test is unaffected)")
    console.print(f"teacher: {teacher} ({scorer.kind}) on {len(x)} training images")
    p = np.asarray(scorer.predict(x), np.float64).reshape(-1)
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise EdgeDetectError(f"--teacher {teacher}: its outputs are not probabilities in [0, 1]")
    return p


def _callbacks_class():
    import keras

    class RunCheckpoint(keras.callbacks.Callback):
        """Best/last checkpoints, history, early stopping and per-epoch reseeding, all restorable on --resume."""

        def __init__(self, run_dir: Path, state: dict, history: dict, patience: int, seed: int, train_seq, progress):
            super().__init__()
            self.run_dir, self.state, self.history = run_dir, state, history
            self.patience, self.seed, self.train_seq, self.progress = patience, seed, train_seq, progress

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_t0 = time.perf_counter()
            # Dropout's random stream is reset from (seed, epoch), so a resumed run draws what an unbroken one would.
            for layer in self.model._flatten_layers():
                gen = getattr(layer, "seed_generator", None)
                if gen is not None:
                    gen.state.assign(np.array([self.seed, epoch], dtype=gen.state.dtype))
            self.train_seq.set_epoch(epoch)
            self.progress.start_epoch(epoch, len(self.train_seq))

        def on_train_batch_end(self, batch, logs=None):
            self.progress.batch(logs or {})

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            for key, value in logs.items():
                self.history.setdefault(key, []).append(float(value))
            auc = logs.get("val_auc", float("nan"))
            improved = auc > self.state["best_val_auc"]
            if improved:
                self.state.update(best_val_auc=float(auc), best_epoch=epoch + 1, wait=0)
                _save_model(self.model, self.run_dir / "best.keras", training_state=False)
            else:
                self.state["wait"] += 1
            self.state["epoch"] = epoch + 1
            # counted per finished epoch, so the time before an interruption stays in the run's total
            seconds = time.perf_counter() - self.epoch_t0
            self.state["train_seconds"] += seconds
            _save_model(self.model, self.run_dir / "last.keras")
            atomic_write_text(self.run_dir / "history.json", json.dumps(self.history, indent=1))
            atomic_write_text(self.run_dir / "state.json", json.dumps(self.state, indent=1))
            self.progress.end_epoch(epoch, logs, improved, seconds)
            if self.state["wait"] >= self.patience:
                self.progress.note(f"early stop: val AUC has not improved for {self.patience} epochs")
                self.model.stop_training = True

    return RunCheckpoint


def _save_model(model, path: Path, training_state: bool = True) -> None:
    """Write ``model`` atomically; without ``training_state``, an uncompiled copy (no optimizer, no metrics)."""
    if not training_state:
        import keras

        copy = keras.Model.from_config(model.get_config())  # clone_model would also copy the compile settings
        copy.set_weights(model.get_weights())
        model = copy
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C or a full disk: keep the previous checkpoint and leave no half-written file
        tmp.unlink(missing_ok=True)
        raise


class _Progress:
    """A rich progress bar per epoch and one summary line per finished epoch."""

    def __init__(self, epochs: int, enabled: bool = True):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, soft_wrap=True)
        self.epochs = epochs
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not enabled,
        )
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def start_epoch(self, epoch, steps):
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task("", total=steps, epoch=epoch + 1, epochs=self.epochs, loss=0.0, acc=0.0)

    def batch(self, logs):
        self.bar.update(self.task, advance=1, loss=logs.get("loss", 0.0), acc=logs.get("accuracy", 0.0))

    def end_epoch(self, epoch, logs, improved, seconds):
        mark = " [green]best[/]" if improved else ""
        self.console.print(
            f"epoch {epoch + 1:>3}/{self.epochs}  {seconds:5.0f}s  "
            f"loss {logs.get('loss', 0):.4f}  acc {logs.get('accuracy', 0):.4f}  auc {logs.get('auc', 0):.4f}  |  "
            f"val loss {logs.get('val_loss', 0):.4f}  acc {logs.get('val_accuracy', 0):.4f}  "
            f"auc {logs.get('val_auc', 0):.4f}  lr {logs['lr']:.2e}{mark}"
        )

    def note(self, text):
        self.console.print(text)


def default_run_dir(arch: str) -> Path:
    return RUNS_DIR / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_run(runs_dir: Path = RUNS_DIR) -> Path:
    """The run directory ``runs/latest.json`` points at."""
    pointer = runs_dir / LATEST
    if not pointer.is_file():
        raise EdgeDetectError(
            f"no training run found ({pointer} is missing); train one with `edgedetect train` or name a model file"
        )
    run_dir = Path(json.loads(pointer.read_text())["run_dir"])
    if not (run_dir / "best.keras").is_file():
        raise EdgeDetectError(f"{pointer} points at {run_dir}, which has no best.keras; name a model file instead")
    return run_dir


def _versions() -> dict:
    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
                "numpy": np.__version__, "platform": platform.platform()}
    if "tensorflow" in sys.modules:
        versions["tensorflow"] = sys.modules["tensorflow"].__version__
    return versions


def _setup_devices(cfg: TrainConfig, console) -> object | None:
    """Mixed precision and multi-GPU strategy; returns a distribution scope or None."""
    import keras

    gpus = []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    elif keras.backend.backend() == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
    elif keras.backend.backend() == "torch":
        import torch

        gpus = list(range(torch.cuda.device_count()))
    console.print(f"device: {len(gpus)} GPU(s)" if gpus else "device: CPU")
    if cfg.mixed_precision:
        if gpus:
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            console.print("[yellow]warning:[/] --mixed-precision needs a GPU; training in float32 on the CPU")
    if len(gpus) > 1 and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    return None


def train(cfg: TrainConfig | None, resume_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Train ``cfg.arch`` on ``cfg.data``; returns the run directory.

    Args:
        cfg: the settings; None (or ignored) when resuming: the run's own config.json is used.
        resume_dir: a run directory to continue from its last.keras.
        progress: show the per-epoch progress bar.

    Raises:
        EdgeDetectError: bad data, unknown architecture, unavailable weights, nothing to resume.
    """
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if not (run_dir / "last.keras").is_file() or not (run_dir / "state.json").is_file():
            raise EdgeDetectError(f"{run_dir}: nothing to resume (no last.keras/state.json); start a new run instead")
        previous = json.loads((run_dir / "config.json").read_text())
        cfg = TrainConfig(**previous["config"])
        state = json.loads((run_dir / "state.json").read_text())
        state.setdefault("train_seconds", 0.0)  # runs from before it was counted per epoch
        history = json.loads((run_dir / "history.json").read_text())
    else:
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg.arch)
        if (run_dir / "state.json").exists():
            raise EdgeDetectError(f"{run_dir} already holds a run; use --resume to continue it or pick another --out")
        state = {"epoch": 0, "best_val_auc": -1.0, "best_epoch": 0, "wait": 0, "train_seconds": 0.0}
        history = {}
        previous = {}

    import keras

    from training.model_spec import build_model, get_spec, set_trainable_layers

    spec = get_spec(cfg.arch)
    cfg.img_size = cfg.img_size or spec.default_img_size
    init_seed = cfg.seed if cfg.init_seed is None else cfg.init_seed
    if cfg.preprocess == "crops":
        if cfg.teacher or cfg.limit:
            raise EdgeDetectError("--teacher and --limit are not supported with --preprocess crops")
        dataset = _NativeData(cfg, init_seed, progress, console)
        train_seq, val_seq = dataset.train_seq, dataset.val_seq
    elif cfg.preprocess != "resize":
        raise EdgeDetectError(f"--preprocess {cfg.preprocess}: valid: resize, crops")
    else:
        dataset, train_seq, val_seq = _resize_data(cfg, init_seed, progress, console, run_dir, resume_dir)
    keras.utils.set_random_seed(init_seed)
    scope = _setup_devices(cfg, console)

    with scope if scope is not None else _nullcontext():
        if resume_dir is not None:
            _metric_classes()  # registers the metric classes last.keras names
            model = keras.saving.load_model(run_dir / "last.keras", safe_mode=True)
            console.print(f"resuming {run_dir} at epoch {state['epoch'] + 1}/{cfg.epochs}")
        else:
            model = build_model(cfg.arch, cfg.img_size, cfg.weights, cfg.dropout, front=cfg.front)
            set_trainable_layers(model, cfg.trainable_layers)
            schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=cfg.epochs * len(train_seq), alpha=0.01)
            model.compile(
                optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
                loss="binary_crossentropy",
                metrics=_metrics(),
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    config_doc = {"config": asdict(cfg), "dataset": dataset.describe(), "params": model.count_params(),
                  "versions": _versions(), "command": previous.get("command", sys.argv)}
    if resume_dir is not None:  # keep the command that started the run: it is the one that reproduces it
        config_doc["resumed_with"] = previous.get("resumed_with", []) + [sys.argv]
    atomic_write_text(run_dir / "config.json", json.dumps(config_doc, indent=1))
    _point_latest(run_dir)

    RunCheckpoint = _callbacks_class()
    with _Progress(cfg.epochs, enabled=progress) as bar:
        checkpoint = RunCheckpoint(run_dir, state, history, cfg.patience, init_seed, train_seq, bar)
        if state["epoch"] < cfg.epochs and state["wait"] < cfg.patience:
            model.fit(train_seq, validation_data=val_seq, epochs=cfg.epochs, initial_epoch=state["epoch"],
                      callbacks=[checkpoint], verbose=0, shuffle=False)

    if not (run_dir / "best.keras").is_file():  # val AUC was never a number (e.g. NaN losses)
        raise EdgeDetectError(f"{run_dir}: no epoch produced a valid val AUC, so there is no best.keras; "
                              "check the data and try a lower --lr")
    best = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
    metrics = dataset.final_metrics(best, cfg) if isinstance(dataset, _NativeData) else _final_metrics(best, dataset, cfg)
    metrics.update(best_epoch=state["best_epoch"], epochs_run=state["epoch"], train_seconds=round(state["train_seconds"], 1),
                   params=int(best.count_params()))
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    plot_history(history, run_dir / "curves.png")
    _summary(console, run_dir, metrics)
    return run_dir


def _print_skipped(console, unreadable) -> None:
    """One inert line per file the data loader could not use (control characters escaped)."""
    from rich.markup import escape

    from edgedetect.errors import printable

    for path, problem in unreadable:
        console.print(f"[yellow]skipped[/] {escape(printable(path))}: {escape(printable(problem))}", soft_wrap=True)


def _resize_data(cfg: TrainConfig, init_seed: int, progress: bool, console, run_dir: Path, resume_dir):
    """The whole-image dataset (resized to ``cfg.img_size``) and its train/val sequences."""
    from edgedetect.data import load_dataset

    dataset = load_dataset(cfg.data, cfg.img_size, val_fraction=cfg.val_fraction, seed=cfg.seed, progress=progress)
    train_split, val_split = dataset.split("train"), dataset.split("val")
    if cfg.limit:
        train_split = train_split.subset(np.random.default_rng(cfg.seed).permutation(len(train_split))[: cfg.limit])
    _print_skipped(console, dataset.unreadable)
    console.print(f"data: {dataset.source}  " + "  ".join(f"{n} {len(s)}" for n, s in dataset.splits.items())
                  + ("  (val carved from train)" if dataset.val_carved else ""))

    targets = train_split.y
    if cfg.teacher:
        cached = run_dir / "teacher.npy"
        if resume_dir is not None and cached.is_file():
            p_teacher = np.load(cached)
        else:
            p_teacher = teacher_predictions(cfg.teacher, train_split.x, cfg, console)
            run_dir.mkdir(parents=True, exist_ok=True)
            tmp = run_dir / f".teacher.tmp{os.getpid()}.npy"
            np.save(tmp, p_teacher)
            os.replace(tmp, cached)
        if len(p_teacher) != len(targets):
            raise EdgeDetectError(f"{cached}: {len(p_teacher)} teacher outputs for {len(targets)} training images")
        targets = distillation_targets(train_split.y, p_teacher)
        agree = float(np.mean((p_teacher > 0.5) == (train_split.y == 1)))
        console.print(f"distillation: targets = {1 - TEACHER_WEIGHT:g} x label + {TEACHER_WEIGHT:g} x teacher "
                      f"p_fake (teacher agrees with {agree:.2%} of the training labels)")

    Sequence = _sequence_class()
    train_seq = Sequence(train_split.x, targets, cfg.batch_size, init_seed, cfg.augment, shuffle=True)
    val_seq = Sequence(val_split.x, val_split.y, 512, init_seed, augment=False, shuffle=False)

    return dataset, train_seq, val_seq


class _NativeData:
    """Native-resolution sources (``preprocess="crops"``): random crops to train on, the runtime's crops to score."""

    def __init__(self, cfg: TrainConfig, init_seed: int, progress: bool, console):
        from training.native_data import Augment, NO_AUGMENT, carve_val, crop_sequence_class, fixed_crops, load_sources, steps_for

        sources = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
        data, self.unreadable = load_sources(sources, progress=progress)
        _print_skipped(console, self.unreadable)
        self.train, self.val = carve_val(data, cfg.val_fraction, cfg.seed)
        self.source = ", ".join(sources)
        self.augment = Augment(jpeg=cfg.jpeg_prob) if cfg.augment else NO_AUGMENT
        steps = cfg.steps_per_epoch or steps_for(self.train, cfg.batch_size)
        self.train_seq = crop_sequence_class()(self.train, cfg.img_size, cfg.batch_size, steps, init_seed, self.augment,
                                               cfg.synth_fakes)
        vx, owner, vy = fixed_crops(self.val, cfg.img_size, 1)  # one centre crop per image, for checkpoint selection
        self.val_seq = _sequence_class()(vx, vy[owner], 256, init_seed, augment=False, shuffle=False)
        self.sizes = data.sizes()
        console.print(f"data: {self.source}  train {len(self.train)}  val {len(self.val)} images (val carved per source "
                      f"and class, by file); {steps} steps of {cfg.batch_size} {cfg.img_size}-px crops per epoch")

    def describe(self) -> dict:
        return {"sources": self.source, "mode": "crops", "crop": self.train_seq.crop,
                "counts": {"train": self.train.counts(), "val": self.val.counts()}, "image_sizes": self.sizes,
                "val": "carved from train per source and class, by file", "unreadable": len(self.unreadable),
                "augmentation": self.augment.describe(), "sampling": "class-balanced; sources by sqrt(count)",
                "synthetic_fakes": (f"{self.train_seq.synth_fakes:.0%} of FAKE samples: a REAL crop upsampled 2x and "
                                    "smoothed" if self.train_seq.synth_fakes else "none")}

    def final_metrics(self, model, cfg: TrainConfig) -> dict:
        """Val figures per image with the runtime's crops, for every combine rule; the best rule on val AUC wins."""
        from edgedetect.crops import COMBINE_RULES, combine_all
        from edgedetect.metrics import binary_metrics, optimal_threshold
        from training.native_data import fixed_crops

        x, owner, y = fixed_crops(self.val, cfg.img_size, cfg.max_crops)
        p_crops = predict_keras(model, x)
        def threshold_for(p):
            # Youden's J picks a val score; midway to the next lower one classifies val the same and keeps a margin,
            # which a well-separated val set needs (else the threshold sits on the edge of the FAKE scores, e.g.
            # above 0.996, the largest p_fake an int8 output with scale 1/256 can express).
            t = optimal_threshold(y, p, "youden")
            below = p[p < t]
            return float((t + below.max()) / 2) if len(below) else t

        rules = {}
        for rule in COMBINE_RULES:
            p = combine_all(p_crops, owner, len(y), rule)
            t = threshold_for(p)
            rules[rule] = {"threshold": t, "val": binary_metrics(y, p, t)}
        rule = max(rules, key=lambda r: rules[r]["val"]["roc_auc"])
        p = combine_all(p_crops, owner, len(y), rule)
        threshold = rules[rule]["threshold"]
        src = np.asarray(self.val.source)
        per_source = {}
        for name in sorted(set(self.val.source)):
            m = src == name
            per_source[name] = {"n": int(m.sum()), "accuracy": float(np.mean((p[m] >= threshold) == (y[m] == 1)))}
        return {"threshold": threshold, "threshold_method": "youden J on val, midway to the next lower val score",
                "combine": rule,
                "max_crops": cfg.max_crops, "combine_rules": rules, "val": rules[rule]["val"],
                "val_at_0.5": binary_metrics(y, p, 0.5), "val_per_source": per_source}


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _point_latest(run_dir: Path) -> None:
    pointer = run_dir.parent / LATEST
    atomic_write_text(pointer, json.dumps({"run_dir": str(run_dir.resolve())}) + "\n")


def predict_keras(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """p_fake for uint8 images with a Keras model, in batches."""
    out = model.predict(x.astype("float32"), batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float64).reshape(-1)


def _final_metrics(model, dataset, cfg: TrainConfig) -> dict:
    from edgedetect.metrics import binary_metrics, optimal_threshold

    val = dataset.split("val")
    p_val = predict_keras(model, val.x)
    threshold = optimal_threshold(val.y, p_val, "youden")
    out = {"threshold": threshold, "threshold_method": "youden J on val",
           "val": binary_metrics(val.y, p_val, threshold), "val_at_0.5": binary_metrics(val.y, p_val, 0.5)}
    if "test" in dataset.splits:
        test = dataset.split("test")
        out["test"] = binary_metrics(test.y, predict_keras(model, test.x), threshold)
    return out


def plot_history(history: dict, path: Path) -> None:
    """Loss, accuracy and AUC per epoch for train and val, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("loss", "accuracy", "auc")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key, [])
            ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_").rstrip("_"))
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


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
