"""The registry of trainable architectures: name -> builder, default input size, in-graph preprocessing.

Every built model takes raw RGB pixels 0-255 (float32, NHWC) and outputs one sigmoid unit, p_fake.
Normalisation lives inside the graph so every exported file takes the same input as
:func:`edgedetect.preprocess.load_image` produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from keras import layers

from edgedetect.errors import EdgeDetectError

# Keras' MobileNetV3 uses BatchNorm momentum 0.999: after a short training from scratch the moving statistics
# still describe the first batches and inference-mode outputs are near-constant. 0.9 tracks them in ~50 steps.
BN_MOMENTUM = 0.9
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture.

    Attributes:
        name: registry name, used on the command line.
        default_img_size: input side used when ``--img-size`` is not given.
        preprocessing: the normalisation inside the graph, in words (also written to model metadata).
        backbone: ``(inputs_0_255, img_size, weights) -> feature map``; ``weights`` is None, "imagenet" or a path.
        imagenet: whether ImageNet weights exist for it.
    """

    name: str
    default_img_size: int
    preprocessing: str
    backbone: Callable[[keras.KerasTensor, int, str | None], keras.KerasTensor]
    imagenet: bool = True


def _mobilenet_v3(variant: str, minimalistic: bool = False) -> Callable:
    # minimalistic=True: Keras' variant without squeeze-excite, hard-swish or 5x5 kernels, designed for quantized
    # inference (Howard et al. 2019, section 6.1).
    def build(x, img_size, weights):
        app = keras.applications.MobileNetV3Small if variant == "small" else keras.applications.MobileNetV3Large
        net = app(
            input_shape=(img_size, img_size, 3),
            include_top=False,
            weights=weights,
            minimalistic=minimalistic,
            include_preprocessing=True,  # Rescaling(1/127.5, offset=-1) inside: takes 0-255
        )
        for layer in net.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = BN_MOMENTUM
        return net(x)

    return build


def _resnet50(x, img_size, weights):
    # caffe-style preprocess_input (RGB->BGR, subtract ImageNet mean) as a frozen 1x1 convolution: a builtin
    # layer, so the saved model loads with safe_mode=True and converts to one TFLite CONV_2D.
    to_bgr = layers.Conv2D(3, 1, name="caffe_preprocess", trainable=False)
    y = to_bgr(x)
    to_bgr.set_weights([np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3), -np.array(CAFFE_BGR_MEAN, "float32")])
    net = keras.applications.ResNet50(input_shape=(img_size, img_size, 3), include_top=False, weights=weights)
    return net(y)


def _cnn(widths: tuple[int, int, int]) -> Callable:
    """The usual "CNN from scratch": three blocks of two conv-BN-ReLU and a max-pool, widths doubling.

    Kept narrow because it is meant for the edge. Measured here with ai-edge-litert, one thread, batch 256 at
    32 px: widths 16-32-64 (~73k parameters) run ~32k img/s in int8, 32-64-128 only ~8k.
    """

    def build(x, img_size, weights):
        y = layers.Rescaling(1.0 / 255, name="rescale")(x)
        for i, width in enumerate(widths):
            for j in range(2):
                y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv{j + 1}")(y)
                y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i + 1}_bn{j + 1}")(y)
                y = layers.ReLU(name=f"block{i + 1}_relu{j + 1}")(y)
            y = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(y)
        return y

    return build


def _photo_trunk(widths: tuple[int, int, int]) -> Callable:
    """A plain trunk for native-resolution crops: a stride-1 conv that sees single-pixel traces at full resolution,
    then three stages of a strided conv (halving the size) and a conv, 32-64-128 wide: ~90M MACs per 96-px crop."""

    def build(x, img_size, weights):
        y = layers.Rescaling(1.0 / 32, name="rescale")(x)
        for i, width in enumerate(widths):
            for j, stride in enumerate((1, 2) if i == 0 else (2, 1)):
                y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False,
                                  name=f"stage{i + 1}_conv{j + 1}")(y)
                y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"stage{i + 1}_bn{j + 1}")(y)
                y = layers.ReLU(name=f"stage{i + 1}_relu{j + 1}")(y)
        return y

    return build


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mobilenet_v3_small", 32, "Rescaling(1/127.5, offset=-1) inside the Keras application", _mobilenet_v3("small")),
        ModelSpec("mobilenet_v3_large", 32, "Rescaling(1/127.5, offset=-1) inside the Keras application", _mobilenet_v3("large")),
        ModelSpec("resnet50", 32, "caffe: RGB->BGR and ImageNet mean subtraction (frozen 1x1 conv)", _resnet50),
        ModelSpec("cnn", 32, "Rescaling(1/255)", _cnn((16, 32, 64)), imagenet=False),
        ModelSpec("cnn_wide", 32, "Rescaling(1/255)", _cnn((24, 48, 96)), imagenet=False),
        ModelSpec("photo_cnn", 96, "Rescaling(1/32) of the front end's output", _photo_trunk((32, 64, 128)),
                  imagenet=False),
        ModelSpec("mobilenet_v3_small_min", 32, "Rescaling(1/127.5, offset=-1) inside the Keras application",
                  _mobilenet_v3("small", minimalistic=True)),
        ModelSpec("mobilenet_v3_large_min", 32, "Rescaling(1/127.5, offset=-1) inside the Keras application",
                  _mobilenet_v3("large", minimalistic=True)),
    )
}


# Residuals beyond this many grey levels are soft-clipped (tanh): the traces of upsampling are small, and an int8
# tensor spanning the full +-255 would step in 2 grey levels and round most of them away.
NPR_CLIP = 16.0


def _npr(x):
    # Neighbouring Pixel Relationships (Tan et al., CVPR 2024): the image minus its 2x2 nearest-neighbour down/up
    # copy, which is zero wherever a 2x2 block repeats one pixel, as upsampling layers make. Built from builtins:
    # a fixed 1x1 stride-2 depthwise conv takes each block's top-left pixel, Resizing(nearest) repeats it
    # (RESIZE_NEAREST_NEIGHBOR), Subtract (SUB), then NPR_CLIP * tanh(r / NPR_CLIP) (MUL, TANH); int8 calibration
    # sees the residual's range.
    size = int(x.shape[1])
    pick = layers.DepthwiseConv2D(1, strides=2, use_bias=False, trainable=False, name="npr_down")
    down = pick(x)
    pick.set_weights([np.ones((1, 1, 3, 1), "float32")])
    up = layers.Resizing(size, size, interpolation="nearest", name="npr_up")(down)
    r = layers.Subtract(name="npr")([x, up])
    r = layers.Rescaling(1.0 / NPR_CLIP, name="npr_scale")(r)
    r = layers.Activation("tanh", name="npr_clip")(r)
    return layers.Rescaling(NPR_CLIP, name="npr_unscale")(r)


_LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], "float32") / 4


def _highpass(x):
    # A fixed 3x3 Laplacian per channel (DEPTHWISE_CONV_2D): removes content below ~1/4 of the sampling rate.
    conv = layers.DepthwiseConv2D(3, padding="same", use_bias=False, trainable=False, name="highpass")
    y = conv(x)
    conv.set_weights([np.repeat(_LAPLACIAN[:, :, None, None], 3, axis=2)])
    return y


@dataclass(frozen=True)
class Front:
    """Fixed signal processing in front of an architecture, inside the graph (every runtime computes it alike).

    Attributes:
        description: what it computes, in words (written to model metadata).
        build: ``inputs_0_255 -> tensor``, or None for no front end.
        float_ops: the TFLite builtins it compiles to, which an int8 file keeps in float: its output is a small
            residual riding on 0-255 pixels, and one int8 scale per tensor rounds much of it away (converted
            int8, a five-source photo model agreed with its Keras model on 93.2% of 1,000 crops; with these
            kept float, 99.1%).
    """

    description: str
    build: Callable | None
    float_ops: tuple[str, ...] = ()


FRONTS: dict[str, Front] = {
    "none": Front("raw RGB 0-255", None),
    "npr": Front("NPR residual: image minus its 2x2 nearest down/up copy (Tan et al., CVPR 2024), soft-clipped to "
                 "+-16 grey levels (16 tanh(r/16))", _npr,
                 ("DEPTHWISE_CONV_2D", "RESIZE_NEAREST_NEIGHBOR", "SUB", "MUL", "TANH")),
    "highpass": Front("fixed 3x3 Laplacian high-pass per channel", _highpass, ("DEPTHWISE_CONV_2D",)),
}


def get_front(name: str) -> Front:
    """The front end registered as ``name``; an unknown name is an error listing the valid ones."""
    if name not in FRONTS:
        raise EdgeDetectError(f"unknown front end '{name}'; valid: {', '.join(FRONTS)}")
    return FRONTS[name]


def get_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; an unknown name is an error listing the valid ones."""
    if name not in REGISTRY:
        raise EdgeDetectError(f"unknown architecture '{name}'; valid: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_model(name: str, img_size: int | None = None, weights: str | None = None, dropout: float = 0.2,
                front: str = "none") -> keras.Model:
    """Build ``name`` with its in-graph preprocessing and a GAP -> dropout -> sigmoid(p_fake) head.

    Args:
        name: a registry name.
        img_size: input side (default: the spec's).
        weights: None (from scratch), "imagenet" (Keras download; needs internet) or a local weights file
            for the backbone (e.g. Keras' ``*_notop.h5``).
        dropout: rate of the head's dropout.
        front: a :data:`FRONTS` name: fixed signal processing applied to the pixels before the backbone.

    Raises:
        EdgeDetectError: unknown name, weights this architecture lacks, missing weights file, or a failed download.
    """
    spec = get_spec(name)
    img_size = img_size or spec.default_img_size
    if weights is not None:
        if not spec.imagenet:
            raise EdgeDetectError(f"'{name}' has no pretrained weights; use --weights none")
        if weights != "imagenet" and not Path(weights).is_file():
            raise EdgeDetectError(f"--weights {weights}: file not found (use none, imagenet or a local weights file)")
    front_fn = get_front(front).build
    if front_fn is not None and img_size % 2:
        raise EdgeDetectError(f"--front {front} needs an even input size, received {img_size}")
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = front_fn(inputs) if front_fn else inputs
    try:
        features = spec.backbone(x, img_size, weights)
    except Exception as e:  # Keras raises plain Exception/URLError/ValueError from its downloader and loader
        if weights is None:
            raise
        hint = "no internet here? download the file elsewhere and pass --weights FILE, or use --weights none"
        raise EdgeDetectError(f"cannot load {weights} weights for {name} ({type(e).__name__}: {e}); {hint}") from None
    y = layers.GlobalAveragePooling2D(name="pool")(features)
    y = layers.Dropout(dropout, name="dropout")(y)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(y)
    return keras.Model(inputs, outputs, name=f"{name}_{img_size}")


def set_trainable_layers(model: keras.Model, n: int | None) -> None:
    """Freeze all but the last ``n`` layers of the backbone (None or negative: everything trainable).

    BatchNormalization layers that are frozen stay in inference mode, as fine-tuning practice wants.
    """
    if n is None or n < 0:
        return
    backbone = next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)
    if backbone is None:
        raise EdgeDetectError(f"--trainable-layers needs a pretrained backbone; {model.name} has none")
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= len(backbone.layers) - n
