"""`edgedetect train`: fit a registered architecture (needs the [train] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgedetect.commands import output

# Options that only mean something for native-resolution crops; given with --preprocess resize they are refused.
CROPS_ONLY = ("steps_per_epoch", "max_crops", "synth_fakes", "jpeg_prob", "webp_prob", "min_quality", "jitter", "mask_prob", "shuffle_prob")


def _given(ctx: typer.Context, names) -> list[str]:
    """The options among ``names`` (parameter names) that the user set, as written on the command line."""
    return [f"--{name.replace('_', '-')}" for name in names if ctx.get_parameter_source(name).name != "DEFAULT"]


def train(
    ctx: typer.Context,
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture: a name in the registry (training.model_spec.REGISTRY; an unknown name lists them all). photo_cnn is built for --preprocess crops."),
    data: Optional[list[Path]] = typer.Option(None, "--data", help="Dataset folder or .tar.gz/.zip with REAL/FAKE class folders (optionally under train/val/test). With --preprocess crops, repeat it to combine sources; append @RxC to a source whose files are R x C grids of separate images (e.g. sd15.tar.gz@2x2) so crops stay inside one tile."),
    img_size: Optional[int] = typer.Option(None, "--img-size", min=16, help="Input side in pixels: the resize target, or the crop side with --preprocess crops [default: the architecture's]."),
    preprocess: str = typer.Option("resize", "--preprocess", help="resize: the whole image, centre-cropped and resized to --img-size (CIFAKE). crops: random --img-size crops at the image's own resolution, never resized (photos)."),
    front: str = typer.Option("none", "--front", help="Fixed signal processing inside the graph before the backbone: none, npr (image minus its 2x2 nearest down/up copy) or highpass (3x3 Laplacian)."),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", min=1, help="With --preprocess crops: batches per epoch [default: about one crop per training image]."),
    max_crops: int = typer.Option(16, "--max-crops", min=1, help="With --preprocess crops: crops per image at evaluation and in the exported model."),
    synth_fakes: float = typer.Option(0.0, "--synth-fakes", min=0.0, max=1.0, help="With --preprocess crops: share of FAKE samples replaced by REAL crops upsampled 2x and lightly smoothed (generator-like upsampling traces without a generator's content)."),
    jpeg_prob: float = typer.Option(0.5, "--jpeg-prob", min=0.0, max=1.0, help="With --preprocess crops: share of training crops re-encoded as JPEG at a random quality (--min-quality to 100; both classes alike)."),
    webp_prob: float = typer.Option(0.4, "--webp-prob", min=0.0, max=1.0, help="With --preprocess crops: share of training crops re-encoded as lossy WebP at a random quality (--min-quality to 100) instead (both classes alike; --jpeg-prob + --webp-prob <= 1). A codec only one class uses (the shared sd15 FAKE grids are WebP) becomes a label otherwise."),
    min_quality: int = typer.Option(60, "--min-quality", min=1, max=100, help="With --preprocess crops: the lowest JPEG/WebP quality drawn for re-encoding (qualities are uniform up to 100). Lower it when one class's sources are compressed harder than the other's (the shared sdfd FAKE faces are JPEG q75, most REAL photos q90-100)."),
    jitter: float = typer.Option(0.0, "--jitter", min=0.0, max=0.9, help="With --preprocess crops: colour jitter, the largest relative change of brightness, contrast and saturation (both classes alike; SAFE uses 0.5)."),
    mask_prob: float = typer.Option(0.0, "--mask-prob", min=0.0, max=1.0, help="With --preprocess crops: share of training crops with random 16-px squares (up to 75% of the crop) blanked (SAFE's RandomMask)."),
    shuffle_prob: float = typer.Option(0.0, "--shuffle-prob", min=0.0, max=1.0, help="With --preprocess crops: share of training crops whose 16-px squares are permuted: pixel traces stay, content is scrambled."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Maximum epochs (early stopping may end sooner); also sets the cosine schedule's length."),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    lr: float = typer.Option(2e-3, "--lr", min=0.0, help="Peak learning rate of the cosine schedule (AdamW)."),
    weights: str = typer.Option("none", "--weights", help="none (from scratch), imagenet (Keras download, needs internet) or a local backbone weights file."),
    trainable_layers: Optional[int] = typer.Option(None, "--trainable-layers", help="Train only the last N backbone layers (fine-tuning) [default: all]."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random horizontal flips and whole-pixel shifts (no interpolation)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder [default: runs/<arch>-<timestamp>]."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder from its last checkpoint, with the settings in its config.json (give no other options)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the val carve and everything random in training (see --init-seed)."),
    init_seed: Optional[int] = typer.Option(None, "--init-seed", help="Seed for the weights, data order, augmentation and dropout only, keeping --seed's val carve: members of one `edgedetect ensemble` [default: --seed]."),
    mixed_precision: bool = typer.Option(False, "--mixed-precision", help="float16 compute on a GPU."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of train carved (stratified) into val when the data has no val split."),
    patience: int = typer.Option(8, "--patience", min=1, help="Stop after this many epochs without a better val AUC."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use at most N training images (quick trials)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Knowledge distillation: also learn from this model's p_fake (.keras or .tflite, e.g. an ensemble); each training target becomes the average of the label and the teacher's p_fake."),
) -> None:
    """Train a detector; writes best.keras, history, metrics and curves to a run folder."""
    from edgedetect.errors import EdgeDetectError

    if resume is not None:
        from training.train import resume as resume_run

        given = _given(ctx, [name for name in ctx.params if name != "resume"])
        if given:
            raise EdgeDetectError(f"--resume continues {resume} with the settings in its config.json; "
                                  f"drop {', '.join(given)} (or start a new run without --resume)")
        resume_run(resume)
        return
    if arch is None or not data:
        raise EdgeDetectError("--arch and --data are required to start a run (or --resume RUN_DIR to continue one)")
    crops_only = _given(ctx, CROPS_ONLY)
    if preprocess != "crops" and crops_only:
        raise EdgeDetectError(f"{', '.join(crops_only)} only apply to --preprocess crops (this run resizes whole "
                              "images); drop them or add --preprocess crops")
    if jpeg_prob + webp_prob > 1:
        raise EdgeDetectError(f"--jpeg-prob {jpeg_prob:g} + --webp-prob {webp_prob:g} exceed 1: each crop is re-encoded "
                              "at most once, so the two shares must add up to 1 or less")
    if len(data) > 1 and preprocess != "crops":
        raise EdgeDetectError(f"--data given {len(data)} times; several sources need --preprocess crops "
                              "(or merge them into one folder)")

    from training.train import TrainConfig, train as run_training  # TensorFlow: only once the options make sense

    cfg = TrainConfig(
        arch=arch, data=str(data[0]) if preprocess != "crops" else [str(d) for d in data], img_size=img_size, epochs=epochs, batch_size=batch_size, lr=lr,
        weights=None if weights == "none" else weights, trainable_layers=trainable_layers, augment=augment,
        out=str(out) if out else None, seed=seed, mixed_precision=mixed_precision, val_fraction=val_fraction,
        patience=patience, limit=limit, teacher=str(teacher) if teacher else None,
        init_seed=init_seed, preprocess=preprocess, front=front, steps_per_epoch=steps_per_epoch,
        max_crops=max_crops, jpeg_prob=jpeg_prob, webp_prob=webp_prob, min_quality=min_quality, synth_fakes=synth_fakes, jitter=jitter, mask_prob=mask_prob,
        shuffle_prob=shuffle_prob,
    )
    run_training(cfg)


def ensemble(
    runs: list[Path] = typer.Argument(..., help="Two or more training run folders on the same data and val carve; the ensemble takes the smallest member input size and upscales in the graph for larger members."),
    out: Path = typer.Option(..., "--out", help="Folder for the ensemble (best.keras, config.json, metrics.json)."),
    force: bool = typer.Option(False, "--force", help="Replace an ensemble already in --out."),
) -> None:
    """Average several trained models' p_fake in one graph; convert it like a training run."""
    from training.ensemble import make_ensemble
    from training.run import Run

    out_dir = make_ensemble([str(r) for r in runs], str(out), force=force)
    metrics = Run.open(out_dir).metrics
    val = metrics["val"]
    output.echo(f"wrote {out_dir / 'best.keras'}: val accuracy {val['accuracy']:.4f}  F1 {val['f1']:.4f}  "
               f"AUC {val['roc_auc']:.4f} (threshold {metrics['threshold']:.3f}, {metrics['threshold_method']})")
    output.echo(f"next: edgedetect convert {out_dir / 'best.keras'} --quant int8")
