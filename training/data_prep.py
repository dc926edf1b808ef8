"""The data a run trains on: the whole-image dataset or native-resolution sources, their train/val batches, and
distillation targets from a teacher model."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_bytes
from edgedetect.sampling import limit_sample

if TYPE_CHECKING:
    from training.train import TrainConfig

# With a teacher the target of each training image is the average of its label and the teacher's p_fake, kept off
# exactly 0.5 by clipping p_fake, so the label is the target thresholded at 0.5 (what the label metrics score).
TEACHER_WEIGHT = 0.5
_TEACHER_CLIP = 1e-4


def distillation_targets(y: np.ndarray, p_teacher: np.ndarray) -> np.ndarray:
    """Soft targets ``(1 - w) * label + w * p_teacher`` (w = TEACHER_WEIGHT); > 0.5 exactly where the label is FAKE."""
    p = np.clip(np.asarray(p_teacher, np.float64), _TEACHER_CLIP, 1 - _TEACHER_CLIP)
    return ((1 - TEACHER_WEIGHT) * y + TEACHER_WEIGHT * p).astype("float32")


def teacher_predictions(teacher: str, x: np.ndarray, cfg: TrainConfig, console) -> np.ndarray:
    """The teacher's p_fake on the uint8 images ``x`` (a .keras or .tflite teacher, at the run's input size)."""
    from training.keras_model import open_scorer

    scorer = open_scorer(Path(teacher))
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


def print_skipped(console, unreadable) -> None:
    """One inert line per file the data loader could not use (control characters escaped)."""
    from rich.markup import escape

    from edgedetect.errors import printable

    for path, problem in unreadable:
        console.print(f"[yellow]skipped[/] {escape(printable(path))}: {escape(printable(problem))}", soft_wrap=True)


def resize_data(cfg: TrainConfig, init_seed: int, progress: bool, console, run_dir: Path, resuming: bool):
    """The whole-image dataset (resized to ``cfg.img_size``) and its train/val sequences."""
    from edgedetect.data import load_dataset
    from training.loop import ArraySequence

    dataset = load_dataset(cfg.data, cfg.img_size, val_fraction=cfg.val_fraction, seed=cfg.seed, progress=progress)
    train_split, val_split = dataset.split("train"), dataset.split("val")
    if cfg.limit:
        train_split = train_split.subset(limit_sample(len(train_split), cfg.limit, train_split.y, seed=cfg.seed))
    print_skipped(console, dataset.unreadable)
    console.print(f"data: {dataset.source}  " + "  ".join(f"{n} {len(s)}" for n, s in dataset.splits.items())
                  + ("  (val carved from train)" if dataset.val_carved else ""))

    targets = train_split.y
    if cfg.teacher:
        cached = run_dir / "teacher.npy"
        if resuming and cached.is_file():
            p_teacher = np.load(cached)
        else:
            p_teacher = teacher_predictions(cfg.teacher, train_split.x, cfg, console)
            run_dir.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, p_teacher)
            atomic_write_bytes(cached, buf.getvalue())
        if len(p_teacher) != len(targets):
            raise EdgeDetectError(f"{cached}: {len(p_teacher)} teacher outputs for {len(targets)} training images")
        targets = distillation_targets(train_split.y, p_teacher)
        agree = float(np.mean((p_teacher > 0.5) == (train_split.y == 1)))
        console.print(f"distillation: targets = {1 - TEACHER_WEIGHT:g} x label + {TEACHER_WEIGHT:g} x teacher "
                      f"p_fake (teacher agrees with {agree:.2%} of the training labels)")

    train_seq = ArraySequence(train_split.x, targets, cfg.batch_size, init_seed, cfg.augment, shuffle=True)
    val_seq = ArraySequence(val_split.x, val_split.y, 512, init_seed, augment=False, shuffle=False)
    return dataset, train_seq, val_seq


class NativeData:
    """Native-resolution sources (``preprocess="crops"``): random crops to train on, the runtime's crops to score."""

    def __init__(self, cfg: TrainConfig, init_seed: int, progress: bool, console):
        from training.loop import ArraySequence, CropSequence
        from training.native_data import Augment, NO_AUGMENT, carve_val, fixed_crops, load_sources, steps_for

        sources = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
        data, self.unreadable = load_sources(sources, progress=progress)
        print_skipped(console, self.unreadable)
        self.train, self.val = carve_val(data, cfg.val_fraction, cfg.seed)
        self.source = ", ".join(sources)
        self.augment = (Augment(jpeg=cfg.jpeg_prob, webp=cfg.webp_prob, codec_quality=(cfg.min_quality, 100),
                                jitter=cfg.jitter, mask=cfg.mask_prob, shuffle=cfg.shuffle_prob)
                        if cfg.augment else NO_AUGMENT)
        steps = cfg.steps_per_epoch or steps_for(self.train, cfg.batch_size)
        self.train_seq = CropSequence(self.train, cfg.img_size, cfg.batch_size, steps, init_seed, self.augment,
                                               cfg.synth_fakes)
        vx, owner, vy = fixed_crops(self.val, cfg.img_size, 1)  # one centre crop per image, for checkpoint selection
        self.val_seq = ArraySequence(vx, vy[owner], 256, init_seed, augment=False, shuffle=False)
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
