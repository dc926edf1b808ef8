"""The training loop's Keras parts: batches, label metrics, the checkpointing callback, progress and curves.

This module imports Keras at the top: :mod:`training.train` imports it inside the functions that train, so
importing ``training.train`` (for ``TrainConfig``) costs nothing where Keras is missing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from edgedetect.files import atomic_write, atomic_write_text
from training.native_data import Augment, NativeSet, augment_crop, random_crop, sampling_weights, synthetic_fake
from training.run import HISTORY, STATE


class ArraySequence(keras.utils.PyDataset):
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
            x = augment(x, np.random.default_rng(self.rng_seed + [i]), self.shift)
        return x.astype("float32"), self.y[idx]


def augment(x: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    """Random horizontal flips and whole-pixel shifts (reflect-padded) of a uint8 NHWC batch."""
    n, h, w, _ = x.shape
    flip = rng.random(n) < 0.5
    x = x.copy()
    x[flip] = x[flip, :, ::-1]
    padded = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
    dy, dx = rng.integers(0, 2 * shift + 1, (2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


class CropSequence(keras.utils.PyDataset):
    """``steps`` batches of random augmented crops per epoch, reseeded from (seed, epoch) for resumable runs."""

    def __init__(self, data: NativeSet, crop: int, batch_size: int, steps: int, seed: int, aug: Augment,
                 synth_fakes: float = 0.0):
        super().__init__()
        self.data, self.crop, self.batch_size, self.steps, self.seed, self.aug = data, crop, batch_size, steps, seed, aug
        self.weights = sampling_weights(data)
        self.synth_fakes = synth_fakes
        self.y = np.asarray(data.y, "float32")
        real = self.y == 0
        self.real_weights = np.where(real, self.weights, 0.0) / max(1e-12, self.weights[real].sum())
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        idx = rng.choice(len(self.data), self.batch_size, p=self.weights)
        y = self.y[idx]
        crops = []
        for j, label in zip(idx, y):
            if label == 1 and self.synth_fakes and rng.random() < self.synth_fakes:  # a FAKE made from a REAL image
                real = rng.choice(len(self.data), p=self.real_weights)
                crops.append(synthetic_fake(self.data.images[real], self.crop, rng))
            else:
                crops.append(random_crop(self.data.images[j], self.crop, rng))
        x = np.stack([augment_crop(c, self.aug, rng) for c in crops])
        return x.astype("float32"), y


# Accuracy and AUC against the label: the target thresholded at 0.5 (a no-op on hard labels, the label itself for
# distillation targets). Registered, so a resumed run's last.keras loads; best.keras is saved without them.
def _hard(y_true):
    return keras.ops.cast(keras.ops.greater(y_true, 0.5), "float32")


@keras.saving.register_keras_serializable(package="edgedetect")
class LabelAccuracy(keras.metrics.BinaryAccuracy):
    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_hard(y_true), y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="edgedetect")
class LabelAUC(keras.metrics.AUC):
    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_hard(y_true), y_pred, sample_weight)


def label_metrics() -> list:
    """The metrics a run compiles with: accuracy and AUC against the label."""
    return [LabelAccuracy(name="accuracy"), LabelAUC(name="auc")]


class RunCheckpoint(keras.callbacks.Callback):
    """Best/last checkpoints, history, early stopping and per-epoch reseeding, all restorable on resume."""

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
            save_model(self.model, self.run_dir / "best.keras", training_state=False)
        else:
            self.state["wait"] += 1
        self.state["epoch"] = epoch + 1
        # counted per finished epoch, so the time before an interruption stays in the run's total
        seconds = time.perf_counter() - self.epoch_t0
        self.state["train_seconds"] += seconds
        self.history.setdefault("seconds", []).append(round(seconds, 3))
        save_model(self.model, self.run_dir / "last.keras")
        atomic_write_text(self.run_dir / HISTORY, json.dumps(self.history, indent=1))
        atomic_write_text(self.run_dir / STATE, json.dumps(self.state, indent=1))
        self.progress.end_epoch(epoch, logs, improved, seconds)
        if self.state["wait"] >= self.patience:
            self.progress.note(f"early stop: val AUC has not improved for {self.patience} epochs")
            self.model.stop_training = True


def save_model(model, path: Path, training_state: bool = True) -> None:
    """Write ``model`` atomically; without ``training_state``, an uncompiled copy (no optimizer, no metrics)."""
    if not training_state:
        copy = keras.Model.from_config(model.get_config())  # clone_model would also copy the compile settings
        copy.set_weights(model.get_weights())
        model = copy
    # Keras writes .keras files by name (and wants the suffix): atomic_write gives it a temporary one to rename.
    atomic_write(path, model.save, suffix=".keras")


class Progress:
    """A rich progress bar per epoch and one summary line per finished epoch."""

    def __init__(self, epochs: int, enabled: bool = True):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.console = Console(stderr=True, soft_wrap=True)
        self.epochs = epochs
        self.bar = Bar(
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


def setup_devices(mixed_precision: bool, console) -> tuple[object | None, str]:
    """Mixed precision and multi-GPU strategy; returns a distribution scope (or None) and the device in words."""
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
    device = f"{len(gpus)} GPU(s)" if gpus else "CPU"
    console.print(f"device: {device}")
    if mixed_precision:
        if gpus:
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            console.print("[yellow]warning:[/] --mixed-precision needs a GPU; training in float32 on the CPU")
    if len(gpus) > 1 and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope(), device
    return None, device


def plot_history(history: dict, path: Path) -> bool:
    """Loss, accuracy and AUC per epoch for train and val, written to ``path`` (PNG) atomically; False (nothing
    written) when matplotlib, the ``[plot]`` extra, is not installed: the curves are a picture of history.json."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    from edgedetect.plots import save_figure

    fig = Figure(figsize=(13, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, ("loss", "accuracy", "auc")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key, [])
            ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_").rstrip("_"))
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return True
