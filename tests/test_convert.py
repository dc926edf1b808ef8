"""Conversion: every precision runs in the interpreter-only runtime and agrees with the Keras model; int8 needs real
calibration data; outputs are self-describing, atomic and never silently overwritten; --keep-float really keeps
ops in float; builtin ops only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_SIZE, synthetic_images, write_image_folder

pytest.importorskip("tensorflow")

from edgedetect.sampling import balanced_sample  # noqa: E402
from conversion.convert import ConversionConfig, convert  # noqa: E402
from conversion.debug import float_compute_ops  # noqa: E402
from edgedetect.errors import EdgeDetectError  # noqa: E402
from edgedetect.metadata import read_metadata  # noqa: E402
from edgedetect.preprocess import load_image  # noqa: E402
from edgedetect.runtime import Classifier  # noqa: E402


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    # 60 per class: 108 end up in the train split (load_dataset carves 10% into val), above the "too few" warning.
    return write_image_folder(tmp_path_factory.mktemp("calib"), n_per_class=60, size=TINY_SIZE)


@pytest.fixture(scope="module")
def images(calib_dir) -> np.ndarray:
    return np.stack([load_image(p, TINY_SIZE) for p in sorted(calib_dir.rglob("*.png"))])


@pytest.fixture(scope="module")
def keras_p(tiny_keras_model, images) -> np.ndarray:
    import keras

    model = keras.saving.load_model(tiny_keras_model, safe_mode=True)
    return model.predict(images.astype("float32"), verbose=0).reshape(-1).astype(np.float64)


@pytest.fixture(scope="module")
def all_four(tiny_keras_model, calib_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    logs = []
    report = convert(tiny_keras_model, ConversionConfig.for_all(calib=str(calib_dir), out=str(out)), log=logs.append)
    return report, logs


def _labels_agree(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    return float(((a >= threshold) == (b >= threshold)).mean())


def test_all_writes_four_named_files_with_metadata(all_four):
    report, logs = all_four
    assert [p.name for p in report.paths] == ["tiny_fp32.tflite", "tiny_fp16.tflite", "tiny_dynamic.tflite", "tiny_int8.tflite"]
    for o in report.outputs:
        assert o.path.is_file() and o.path.with_suffix(".json").is_file()
        assert o.size_bytes == o.path.stat().st_size
    assert report.outputs[-1].size_bytes < report.fp32_size
    assert not [p for p in report.paths[0].parent.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind
    assert any("108 images" in line and "'REAL': 54, 'FAKE': 54" in line for line in logs)


@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-5), ("fp16", 1e-3)])
def test_float_files_match_keras(all_four, images, keras_p, precision, tolerance):
    path = next(p for p in all_four[0].paths if p.stem.endswith(precision))
    clf = Classifier(path, threads=1)
    assert clf.input_dtype == np.float32 and clf.output_dtype == np.float32
    assert clf.metadata.precision == precision and clf.metadata.io == "float"
    np.testing.assert_allclose(clf.predict(images), keras_p, atol=tolerance, rtol=0)


@pytest.mark.parametrize("precision", ["dynamic", "int8"])
def test_quantized_files_agree_with_keras_on_labels(all_four, images, keras_p, precision):
    path = next(p for p in all_four[0].paths if p.stem.endswith(precision))
    clf = Classifier(path, threads=1)
    assert clf.metadata.precision == precision
    assert _labels_agree(clf.predict(images), keras_p) >= 0.95
    if precision == "int8":
        assert float_compute_ops(path) == {}, "full-integer int8 must not compute anything in float"


def test_int8_metadata_describes_calibration_and_source(all_four, tiny_keras_model, calib_dir):
    meta = read_metadata(all_four[0].paths[-1])
    cal = meta.calibration
    assert (cal["n"], cal["per_class"], cal["seed"], cal["source"]) == (108, {"REAL": 54, "FAKE": 54}, 0, str(calib_dir))
    assert "load_image" in cal["preprocessing"]
    assert meta.source_model["sha256"] == hashlib.sha256(Path(tiny_keras_model).read_bytes()).hexdigest()
    assert (meta.input_size, meta.threshold, meta.labels, meta.io) == (TINY_SIZE, 0.5, ["REAL", "FAKE"], "float")
    assert read_metadata(all_four[0].paths[0]).calibration is None


@pytest.mark.parametrize("io,zero_point", [("uint8", 0), ("int8", -128)])
def test_int8_integer_io(tiny_keras_model, calib_dir, tmp_path, images, keras_p, io, zero_point):
    report = convert(tiny_keras_model, ConversionConfig.for_int8(str(calib_dir), io=io, out=str(tmp_path)), log=lambda _: None)
    clf = Classifier(report.paths[0], threads=1)
    assert clf.input_dtype == np.dtype(io) and clf.output_dtype == np.dtype(io)
    assert clf.metadata.io == io
    tensors = clf.describe()
    # Calibration images span 0..255, so the input step is one pixel level; sigmoid outputs are fixed at 1/256.
    assert tensors["input"]["quantization"] == {"scale": pytest.approx(1.0, abs=0.01), "zero_point": zero_point}
    assert tensors["output"]["quantization"] == {"scale": pytest.approx(1 / 256), "zero_point": zero_point}
    assert _labels_agree(clf.predict(images), keras_p) >= 0.95


def test_stratified_sample_is_balanced_and_deterministic():
    y = np.array([0] * 90 + [1] * 10)
    idx = balanced_sample(y, 40, seed=3)
    assert len(idx) == 40 and (y[idx] == 1).sum() == 10  # the small class gives all it has, the rest fills up
    assert np.array_equal(idx, balanced_sample(y, 40, seed=3))
    assert not np.array_equal(idx, balanced_sample(y, 40, seed=4))
    balanced = balanced_sample(np.arange(100) % 2, 30, seed=0)
    assert (np.arange(100)[balanced] % 2).sum() == 15


def test_int8_without_calibration_is_an_error(tiny_keras_model, tmp_path):
    with pytest.raises(EdgeDetectError, match="int8 needs calibration data and none was given.*never calibrated on random noise"):
        convert(tiny_keras_model, ConversionConfig.for_int8(out=str(tmp_path)), log=lambda _: None)
    with pytest.raises(EdgeDetectError, match="calibration data .*nowhere not found"):
        convert(tiny_keras_model, ConversionConfig.for_int8(str(tmp_path / "nowhere"), out=str(tmp_path)), log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_plain_image_folder_calibrates_and_few_images_warn(tiny_keras_model, tmp_path):
    from PIL import Image

    plain = tmp_path / "plain"  # no REAL/FAKE folders: unlabelled calibration images
    plain.mkdir()
    for i, img in enumerate(synthetic_images(12, TINY_SIZE, seed=5)[0]):
        Image.fromarray(img).save(plain / f"img {i}.png")
    logs = []
    report = convert(tiny_keras_model, ConversionConfig.for_int8(str(plain), out=str(tmp_path)), log=logs.append)
    assert any(line.startswith("warning: only 12 calibration images") for line in logs)
    assert report.calibration["per_class"] == {"unlabelled": 12} and report.outputs[0].agreement is not None


def test_io_and_int8_options_need_int8():
    with pytest.raises(EdgeDetectError, match="--io uint8 needs an int8 output"):
        ConversionConfig.for_float("fp16", io="uint8").validate()
    with pytest.raises(EdgeDetectError, match="--keep-float applies to int8"):
        ConversionConfig.for_float(keep_float=("HARD_SWISH",)).validate()
    with pytest.raises(EdgeDetectError, match="a single file cannot hold 4 precisions"):
        ConversionConfig.for_all(out="model.tflite").validate()


def test_existing_output_is_not_overwritten_without_force(tiny_keras_model, calib_dir, tmp_path):
    existing = tmp_path / "tiny_int8.tflite"
    existing.write_bytes(b"old")
    with pytest.raises(EdgeDetectError, match="tiny_int8.tflite already exists; pass --force"):
        convert(tiny_keras_model, ConversionConfig.for_all(str(calib_dir), out=str(tmp_path)), log=lambda _: None)
    # Every output is checked before anything is converted: no partial set of files.
    assert list(tmp_path.iterdir()) == [existing] and existing.read_bytes() == b"old"

    report = convert(tiny_keras_model, ConversionConfig.for_int8(str(calib_dir), out=str(tmp_path), force=True),
                     log=lambda _: None)
    assert report.paths == [existing] and existing.read_bytes()[4:8] == b"TFL3"


def test_interrupted_write_keeps_the_old_file(tiny_keras_model, tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(dst) == target:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        convert(tiny_keras_model, ConversionConfig.for_float(out=str(target), force=True, check=False), log=lambda _: None)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_saved_model_folder_converts(tiny_keras_model, tmp_path, images, keras_p):
    import keras

    saved = tmp_path / "exported"
    keras.saving.load_model(tiny_keras_model).export(saved, verbose=False)
    report = convert(saved, ConversionConfig.for_float(out=str(tmp_path), check=False), log=lambda _: None)
    assert report.paths == [tmp_path / "exported_fp32.tflite"]
    meta = read_metadata(report.paths[0])
    assert meta.source_model["format"] == "saved_model" and len(meta.source_model["sha256"]) == 64
    np.testing.assert_allclose(Classifier(report.paths[0], threads=1).predict(images), keras_p, atol=1e-5, rtol=0)


def test_keep_float_leaves_named_ops_and_layers_in_float(tiny_keras_model, calib_dir, tmp_path, images, keras_p):
    config = ConversionConfig.for_int8(str(calib_dir), out=str(tmp_path), keep_float=("CONV_2D", "p_fake"), debug=True)
    report = convert(tiny_keras_model, config, log=lambda _: None)
    path = report.paths[0]
    # The tiny model has two convolutions and one dense layer (named p_fake); everything else stays int8.
    assert float_compute_ops(path) == {"CONV_2D": 2, "FULLY_CONNECTED": 1}
    assert read_metadata(path).calibration["keep_float"]["ops"] == ["CONV_2D"]
    assert _labels_agree(Classifier(path, threads=1).predict(images), keras_p) >= 0.95
    # --debug: per-layer error table of the ops still quantized, worst first.
    rows = report.debug_rows
    assert rows and {r["op_name"] for r in rows}.isdisjoint({"CONV_2D", "FULLY_CONNECTED"})
    assert [r["rmse/scale"] for r in rows] == sorted((r["rmse/scale"] for r in rows), reverse=True)
    header = report.debug_csv.read_text().splitlines()[0]
    assert report.debug_csv.name == "tiny_int8_debug.csv" and "rmse/scale" in header


@pytest.fixture(scope="module")
def hard_swish_model(tmp_path_factory) -> Path:
    """Untrained (ops are what matter here): conv -> hard_swish twice, like MobileNetV3's blocks."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    h = layers.Rescaling(1.0 / 255)(inputs)
    for _ in range(2):
        h = layers.Activation("hard_swish")(layers.Conv2D(8, 3, padding="same")(h))
    outputs = layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling2D()(h))
    path = tmp_path_factory.mktemp("hswish") / "hswish.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def test_hard_swish_stays_float_by_default_unless_full_integer_is_asked(hard_swish_model, calib_dir, tmp_path):
    def int8(name, **kwargs):
        config = ConversionConfig.for_int8(str(calib_dir), out=str(tmp_path / name), check=False, **kwargs)
        return convert(hard_swish_model, config, log=lambda _: None).outputs[0]

    auto, full, integer_io = int8("auto.tflite"), int8("full.tflite", keep_float=()), int8("io.tflite", io="uint8")
    # XNNPACK has no int8 HARD_SWISH: fully integer, the model is cut into several delegate parts.
    assert float_compute_ops(auto.path) == {"HARD_SWISH": 2} and auto.delegate_partitions == 1
    assert float_compute_ops(full.path) == {} and full.delegate_partitions > 1
    assert float_compute_ops(integer_io.path) == {}  # integer I/O means integer-only hardware: full integer


def test_keep_float_unknown_name_is_an_error(tiny_keras_model, calib_dir, tmp_path):
    with pytest.raises(EdgeDetectError, match="--keep-float no_such_layer: not a TFLite op name.*p_fake"):
        convert(tiny_keras_model, ConversionConfig.for_int8(str(calib_dir), out=str(tmp_path), keep_float=("no_such_layer",)),
                log=lambda _: None)
    with pytest.raises(EdgeDetectError, match="--keep-float HARD_SWISH: this model has no such op"):
        convert(tiny_keras_model, ConversionConfig.for_int8(str(calib_dir), out=str(tmp_path), keep_float=("HARD_SWISH",)),
                log=lambda _: None)


def test_model_needing_non_builtin_ops_fails_clearly(tmp_path):
    import tensorflow as tf

    class WithSvd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, x):
            singular = tf.linalg.svd(tf.reshape(x[:, :3, :3, 0], [-1, 3, 3]), compute_uv=False)  # no TFLite builtin
            return {"p_fake": tf.sigmoid(tf.reduce_sum(singular, axis=1, keepdims=True))}

    module = WithSvd()
    tf.saved_model.save(module, str(tmp_path / "svd"), signatures=module.__call__)
    with pytest.raises(EdgeDetectError, match=r"uses TensorFlow ops with no builtin TFLite kernel \(Svd\)"):
        convert(tmp_path / "svd", ConversionConfig.for_float(out=str(tmp_path), check=False), log=lambda _: None)


def test_latest_run_and_its_data_are_used_without_arguments(tiny_keras_model, calib_dir, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "cnn-16-test"
    run.mkdir(parents=True)
    shutil.copy(tiny_keras_model, run / "best.keras")
    command = ["edgedetect", "train", "--arch", "cnn", "--data", str(calib_dir)]
    (run / "config.json").write_text(json.dumps({"config": {"arch": "cnn", "data": str(calib_dir)}, "command": command}))
    (run / "metrics.json").write_text(json.dumps({"threshold": 0.42, "val": {"accuracy": 0.99}}))
    (tmp_path / "runs" / "latest.json").write_text(json.dumps({"run_dir": str(run)}))
    monkeypatch.chdir(tmp_path)
    logs = []
    report = convert(None, ConversionConfig.for_int8(num_calib=40), log=logs.append)
    assert report.paths == [run / "cnn-16-test_int8.tflite"]
    assert any(line.startswith(f"data: {calib_dir} (the run's training data)") for line in logs)
    meta = read_metadata(report.paths[0])
    assert meta.threshold == 0.42 and meta.arch == "cnn" and meta.calibration["n"] == 40
    assert meta.preprocessing["normalisation"] == "inside the model graph: Rescaling(1/255)"
    assert meta.training["command"] == " ".join(command)
    assert meta.metrics["val"] == {"dataset": str(calib_dir), "split": "val", "accuracy": 0.99}


def test_cli_convert_prints_table(cli, tiny_keras_model, calib_dir, tmp_path):
    result = cli.invoke("convert", tiny_keras_model, "--quant", "fp16", "--calib", calib_dir, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "fp16" in result.output and "0/108" in result.output and (tmp_path / "tiny_fp16.tflite").is_file()
    result = cli.invoke("convert", tiny_keras_model, "--quant", "fp32", "--io", "uint8")
    assert isinstance(result.exception, EdgeDetectError) and "--io uint8 needs an int8 output" in str(result.exception)
