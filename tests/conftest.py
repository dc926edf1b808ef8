"""Shared fixtures: synthetic image folders, a tiny trained Keras model and its .tflite files, the shared data.

The synthetic task is easy on purpose: FAKE images carry pixel-level noise, REAL images are smooth gradients,
so a tiny CNN learns it in a few steps and the tests can check real properties (agreement, accuracy) fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CIFAKE_TRAIN = SHARED_DATA / "cifake-train.tar.gz"
CIFAKE_TEST = SHARED_DATA / "cifake-test.tar.gz"
TINY_SIZE = 16


# Prepended to a script (or written as sitecustomize.py) it makes any import of TensorFlow or Keras raise
# ImportError, as in a runtime-only install.
TF_BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tensorflow_cpu"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Blocker())
"""


def run_cli_without_tf(*args) -> subprocess.CompletedProcess:
    """Run ``edgedetect ARGS`` in a subprocess where importing TensorFlow or Keras fails (a runtime-only install).

    The subprocess also fails if, after the command, any tensorflow or keras module was imported.
    """
    script = TF_BLOCKER + (
        "import json, sys\n"
        "from edgedetect.cli import main\n"
        "sys.argv = ['edgedetect', *json.loads(sys.argv[1])]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
    )
    return subprocess.run([sys.executable, "-c", script, json.dumps([str(a) for a in args])],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run ``edgedetect ARGS`` in-process through ``cli.main``; returns (exit code, stdout, stderr)."""
    from edgedetect.cli import main

    monkeypatch.setattr(sys, "argv", ["edgedetect", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def needs_shared_data():
    """Skip (with the reason) when ../shared/data is not beside the checkout, as on a user's fresh clone."""
    if not CIFAKE_TEST.is_file():
        pytest.skip(f"needs the CIFAKE tarballs in {SHARED_DATA} (present in CI; absent on a fresh clone)")


def synthetic_images(n: int, size: int = TINY_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x uint8 (n, size, size, 3), y int (n,))``: label 1 = noisy (FAKE), 0 = smooth (REAL), alternating."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    ramp = np.linspace(0, 1, size)
    x = np.empty((n, size, size, 3), np.float64)
    for i in range(n):
        base = rng.uniform(40, 200, 3) + rng.uniform(-40, 40, 3) * ramp[:, None, None] + rng.uniform(-40, 40) * ramp[None, :, None]
        noise = rng.normal(0, 45, (size, size, 3)) if y[i] else rng.normal(0, 2, (size, size, 3))
        x[i] = base + noise
    return np.clip(x, 0, 255).astype(np.uint8), y


def write_image_folder(root: Path, n_per_class: int = 6, size: int = TINY_SIZE, split: str | None = None,
                       fmt: str = "png", seed: int = 0) -> Path:
    """Write synthetic images as ``root/[split/]REAL|FAKE/<i> (k).<fmt>`` (CIFAKE-like names); returns root."""
    x, y = synthetic_images(2 * n_per_class, size, seed)
    for i, (img, label) in enumerate(zip(x, y)):
        folder = root / (split or "") / ("FAKE" if label else "REAL")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i // 2} ({label + 1}).{fmt}")
    return root


@pytest.fixture(scope="session")
def tiny_keras_model(tmp_path_factory) -> Path:
    """A tiny CNN (raw 0-255 input, sigmoid p_fake) trained to >= 90% on the synthetic task; path to its .keras."""
    keras = pytest.importorskip("keras")
    from keras import layers

    keras.utils.set_random_seed(0)
    x, y = synthetic_images(256, TINY_SIZE, seed=1)
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3), name="image")
    h = layers.Rescaling(1.0 / 255)(inputs)
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(1, activation="sigmoid", name="p_fake")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", metrics=["accuracy"])
    model.fit(x.astype("float32"), y.astype("float32"), epochs=15, batch_size=32, verbose=0)
    acc = model.evaluate(x.astype("float32"), y.astype("float32"), verbose=0)[1]
    assert acc >= 0.9, f"tiny model failed to learn the synthetic task (accuracy {acc:.2f})"
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_tflite(tiny_keras_model, tmp_path_factory) -> dict[str, Path]:
    """The tiny model as ``{"fp32": path, "int8": path (uint8 input/output)}``, each with its metadata sidecar."""
    tf = pytest.importorskip("tensorflow")
    import keras

    from edgedetect.metadata import ModelMetadata, write_metadata

    model = keras.saving.load_model(tiny_keras_model)
    calib, _ = synthetic_images(64, TINY_SIZE, seed=2)
    out = tmp_path_factory.mktemp("tiny_tflite")
    paths = {}
    for precision in ("fp32", "int8"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        io = "float"
        if precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([calib[i : i + 1].astype("float32")] for i in range(len(calib)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
            io = "uint8"
        path = out / f"tiny_{precision}.tflite"
        path.write_bytes(converter.convert())
        write_metadata(path, ModelMetadata(input_size=TINY_SIZE, precision=precision, io=io, arch="tiny-test-cnn"))
        paths[precision] = path
    return paths


def pytest_configure(config):
    # Slow tests still run by default (CI runs plain `python -m pytest -q`); `-m "not slow"` skips them locally.
    config.addinivalue_line("markers", "slow: takes more than a few seconds; deselect with -m 'not slow'")
