"""Shared fixtures: the `cli` runner, synthetic image folders, a tiny trained Keras model and its .tflite files (made by
the project's converter), the shared data.

The synthetic task is easy on purpose: FAKE images carry pixel-level noise, REAL images are smooth gradients,
so a tiny CNN learns it in a few steps and the tests can check real properties (agreement, accuracy) fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CIFAKE_TRAIN = SHARED_DATA / "cifake-train.tar.gz"
CIFAKE_TEST = SHARED_DATA / "cifake-test.tar.gz"
TINY_SIZE = 16


def blocker(*packages: str) -> str:
    """Python source that, prepended to a script (or written as sitecustomize.py), makes any import of these
    top-level packages raise ImportError, as in an install without them."""
    return f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {packages!r}:
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
sys.meta_path.insert(0, Blocker())
"""


# A runtime-only install: importing TensorFlow or Keras fails.
TF_PACKAGES = ("tensorflow", "tf_keras", "keras", "tensorflow_cpu")
TF_BLOCKER = blocker(*TF_PACKAGES)


class Result(NamedTuple):
    code: int
    out: str
    err: str


class Cli:
    """``edgedetect ARGS``, run each way the tests need; the ``cli`` fixture is the one instance.

    ``cli(*args)``: in this process through ``edgedetect.cli.main`` (fast); returns ``Result(code, out, err)``.
    ``cli.invoke(*args)``: the Typer app without main's error policy; ``result.exception`` is what a command raised.
    ``cli.run(*args)``: ``python -m edgedetect ARGS`` in a subprocess, as a user runs it; ``block=("keras", ...)``
    makes those imports fail there (and fails the run if any of them was imported after all); ``python=("-B",)``
    adds interpreter options, ``prefix`` a command in front (another user); other keywords go to ``subprocess.run``.
    ``cli.many({key: args})``: several ``run``s, a few at a time. ``cli.popen(*args, **kw)``: a running one.
    """

    def __call__(self, *args) -> Result:
        from edgedetect.cli import main

        out, err = io.StringIO(), io.StringIO()
        argv = sys.argv
        sys.argv = ["edgedetect", *map(str, args)]
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main()
            code = 0
        except SystemExit as e:
            code = e.code or 0
        finally:
            sys.argv = argv
        return Result(code, out.getvalue(), err.getvalue())

    def invoke(self, *args):
        from typer.testing import CliRunner

        from edgedetect.app import app

        return CliRunner().invoke(app, [str(a) for a in args])

    def command(self, *args, block=(), python=()) -> list[str]:
        if not block:
            return [sys.executable, *python, "-m", "edgedetect", *map(str, args)]
        script = blocker(*block) + (
            "import json, sys\n"
            "from edgedetect.cli import main\n"
            "sys.argv = ['edgedetect', *json.loads(sys.argv[1])]\n"
            "try:\n"
            "    main()\n"
            "finally:\n"
            f"    assert not [m for m in sys.modules if m.split('.')[0] in {block!r}]\n"
        )
        return [sys.executable, *python, "-c", script, json.dumps([str(a) for a in args])]

    def run(self, *args, block=(), python=(), prefix=(), cwd=None, **kwargs) -> subprocess.CompletedProcess:
        options = {"capture_output": True, "encoding": "utf-8", "errors": "surrogateescape", "timeout": 180, **kwargs}
        return subprocess.run([*prefix, *self.command(*args, block=block, python=python)], cwd=cwd or REPO, **options)

    def many(self, runs: dict, prefix=()) -> dict:
        """``{key: args}`` -> ``{key: CompletedProcess}``, a few at a time (each run is mostly interpreter start-up)."""
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {key: pool.submit(self.run, *args, prefix=prefix) for key, args in runs.items()}
            return {key: f.result() for key, f in futures.items()}

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), **{"cwd": REPO, **kwargs})


@pytest.fixture(scope="session")
def cli() -> Cli:
    """Runs ``edgedetect``: in-process, as the app, or as a subprocess (see ``Cli``)."""
    return Cli()


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
    """The tiny model as ``{"fp32": path, "int8": path (uint8 input/output)}``, each with its metadata sidecar.

    Converted by this project's converter (``conversion.convert``), so the runtime tests read what it writes.
    """
    pytest.importorskip("tensorflow")
    from dataclasses import replace

    from conversion.convert import ConversionConfig, convert
    from edgedetect.metadata import read_metadata, write_metadata

    root = tmp_path_factory.mktemp("tiny_tflite")
    calib = write_image_folder(root / "calib", n_per_class=32, seed=2)
    out = root / "models"
    paths = {}
    for config in (ConversionConfig.for_float(out=str(out), check=False),
                   ConversionConfig.for_int8(str(calib), io="uint8", out=str(out), check=False)):
        report = convert(tiny_keras_model, config, log=lambda _: None)
        path = report.outputs[0].path
        # The converter can only guess a bare .keras file's architecture; the tests know it.
        write_metadata(path, replace(read_metadata(path), arch="tiny-test-cnn"))
        paths[config.precisions[0]] = path
    return paths


def pytest_configure(config):
    # Slow tests still run by default (CI runs plain `python -m pytest -q`); `-m "not slow"` skips them locally.
    config.addinivalue_line("markers", "slow: about 10 s or more (training, the browser, all of CIFAKE); "
                                       "deselect with -m 'not slow'")
