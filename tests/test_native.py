"""Native-resolution models: the crop grid, crop training, conversion, and predict's routing and warnings.

The synthetic task: FAKE images are noise upsampled 2x with nearest neighbours (every 2x2 block one colour: what
the NPR front end exists to see), REAL images are the same kind of noise at full resolution; sizes vary.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgedetect.crops import CROP_ALIGN, combine, combine_all, crop_boxes, native_crops

CROP = 32


@pytest.mark.parametrize("size", [(32, 32), (33, 200), (4000, 3000), (96, 64), (1024, 1024), (250, 251)])
@pytest.mark.parametrize("max_crops", [1, 4, 16])
def test_crop_boxes_stay_inside_are_aligned_and_capped(size, max_crops):
    w, h = size
    boxes = crop_boxes(w, h, CROP, max_crops)
    assert 1 <= len(boxes) <= max_crops and len(set(boxes)) == len(boxes)
    for left, top, right, bottom in boxes:
        assert right - left == CROP and bottom - top == CROP
        assert 0 <= left and right <= w and 0 <= top and bottom <= h
        assert left % CROP_ALIGN == 0 and top % CROP_ALIGN == 0
    if max_crops >= 16 and w * h <= 16 * CROP * CROP:
        covered = np.zeros((h, w), bool)  # small images are covered to within the alignment step
        for left, top, right, bottom in boxes:
            covered[top:bottom, left:right] = True
        assert covered[: h - CROP_ALIGN, : w - CROP_ALIGN].all()


def test_native_crops_keep_pixels_and_pad_small_images():
    img = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    crops, boxes, padded = native_crops(img, CROP, 4)
    assert not padded and crops.dtype == np.uint8 and crops.shape == (len(boxes), CROP, CROP, 3)
    for c, (left, top, right, bottom) in zip(crops, boxes):
        np.testing.assert_array_equal(c, img[top:bottom, left:right])  # never resampled
    small, boxes, padded = native_crops(img[:20, :25], CROP, 4)
    assert padded and small.shape == (1, CROP, CROP, 3) and boxes == [(0, 0, CROP, CROP)]
    np.testing.assert_array_equal(small[0, :20, :25], img[:20, :25])


def test_combine_rules():
    p = np.array([0.1, 0.2, 0.9])
    assert combine(p, "mean") == pytest.approx(0.4)
    assert combine(p, "max") == pytest.approx(0.9)
    assert 0.2 < combine(p, "mean_logit") < 0.4
    with pytest.raises(ValueError, match="unknown combine rule 'median'"):
        combine(p, "median")
    owner = np.array([1, 0, 1, 0])
    np.testing.assert_allclose(combine_all(np.array([0.2, 0.4, 0.6, 0.8]), owner, 2, "mean"), [0.6, 0.4])


def test_mask_shuffle_and_jitter_keep_the_upsampling_trace():
    pytest.importorskip("PIL")
    from training.native_data import (SQUARE, MASK_RATIO, Augment, augment_crop, colour_jitter, random_mask,
                                      shuffle_squares)

    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (96, 96, 3), dtype=np.uint8)  # no zero pixel before masking
    shares = []
    for _ in range(50):
        m = random_mask(x, rng)
        blank = (m == 0).all(axis=2)
        cells = blank.reshape(96 // SQUARE, SQUARE, 96 // SQUARE, SQUARE).transpose(0, 2, 1, 3)
        per_cell = cells.reshape(*cells.shape[:2], -1).mean(axis=2)
        assert set(np.unique(per_cell)) <= {0.0, 1.0}  # whole squares of the grid, nothing in between
        assert np.array_equal(m[~blank], x[~blank])
        shares.append(blank.mean())
    assert max(shares) <= MASK_RATIO and min(shares) < 0.2 < max(shares)

    # A 2x nearest-upsampled crop stays one after jitter: each 2x2 block still holds one colour.
    up = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8).repeat(2, axis=0).repeat(2, axis=1)
    j = colour_jitter(up, 0.5, rng)
    assert not np.array_equal(j, up)
    assert np.array_equal(j, j[::2, ::2].repeat(2, axis=0).repeat(2, axis=1))
    assert np.array_equal(colour_jitter(up, 0.0, rng), up)
    assert "mask p=0.5" in " ".join(Augment(mask=0.5, jitter=0.5).describe())
    assert augment_crop(x, Augment(jpeg=0.0, flip=False, rot90=False, gamma=0.0, mask=1.0), rng).shape == x.shape

    # Shuffling permutes whole squares: the NPR residual's squares are the same set, the picture is not.
    def squares_of_residual(a):
        a = a.astype(np.int32)
        r = a - a[::2, ::2].repeat(2, axis=0).repeat(2, axis=1)
        return sorted(r[i:i + SQUARE, k:k + SQUARE].tobytes() for i in range(0, 96, SQUARE)
                      for k in range(0, 96, SQUARE))

    s = shuffle_squares(x, rng)
    assert not np.array_equal(s, x) and squares_of_residual(s) == squares_of_residual(x)


def test_codec_augmentation_gives_jpeg_or_webp_pixels():
    """One draw picks the codec: jpeg=1 always gives JPEG's pixels, webp=1 always WebP's, and they differ."""
    import io

    from PIL import Image
    from training.native_data import Augment, augment_crop

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)

    def decoded(fmt, quality):
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, fmt, quality=quality)
        return np.asarray(Image.open(buf).convert("RGB"))

    plain = dict(flip=False, rot90=False, gamma=0.0, codec_quality=(80, 80))
    as_webp = augment_crop(x, Augment(jpeg=0.0, webp=1.0, **plain), rng)
    as_jpeg = augment_crop(x, Augment(jpeg=1.0, webp=0.0, **plain), rng)
    assert np.array_equal(as_webp, decoded("WEBP", 80)) and np.array_equal(as_jpeg, decoded("JPEG", 80))
    assert not np.array_equal(as_webp, as_jpeg)
    assert "WebP re-encode p=0.4 q~U[50,100]" in " ".join(Augment(jpeg=0.4, webp=0.4, codec_quality=(50, 100)).describe())


def _write_native_folder(root, n_per_class=24, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(2 * n_per_class):
        fake = i % 2
        w, h = int(rng.integers(40, 90)) * 2, int(rng.integers(40, 90)) * 2
        if fake:
            small = rng.integers(0, 256, (h // 2, w // 2, 3), dtype=np.uint8)
            img = small.repeat(2, axis=0).repeat(2, axis=1)
        else:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        folder = root / ("FAKE" if fake else "REAL")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def native_run(tmp_path_factory):
    """A photo_cnn with the NPR front trained on 32-px crops of the synthetic task, converted to fp32 and int8."""
    pytest.importorskip("tensorflow")
    from conversion.convert import ConversionConfig, convert
    from training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("native")
    data = _write_native_folder(root / "data")
    cfg = TrainConfig(arch="photo_cnn", data=[str(data)], preprocess="crops", front="npr", img_size=CROP, epochs=3,
                      steps_per_epoch=12, batch_size=16, max_crops=4, out=str(root / "run"), val_fraction=0.25)
    run_dir = train(cfg, progress=False)
    report = convert(run_dir / "best.keras", ConversionConfig(precisions=("fp32", "int8"), num_calib=64),
                     log=lambda *_: None)
    paths = {p.stem.rsplit("_", 1)[1]: p for p in report.paths if p.suffix == ".tflite"}
    return {"run": run_dir, "data": data, **paths}


@pytest.mark.slow  # the native_run fixture trains (30 s)
def test_crop_run_learns_and_records_its_sources(native_run):
    config = json.loads((native_run["run"] / "config.json").read_text())
    metrics = json.loads((native_run["run"] / "metrics.json").read_text())
    assert config["config"]["preprocess"] == "crops" and config["dataset"]["mode"] == "crops"
    assert list(config["dataset"]["counts"]["train"]) == ["data"]
    assert any("JPEG" in a for a in config["dataset"]["augmentation"])
    assert metrics["combine"] in ("mean", "mean_logit", "max") and set(metrics["combine_rules"]) == {"mean", "mean_logit", "max"}
    assert metrics["val"]["roc_auc"] >= 0.9, metrics["val"]


@pytest.mark.slow  # the native_run fixture trains (30 s)
def test_converted_metadata_states_the_crop_mode(native_run):
    from edgedetect.metadata import read_metadata

    for precision in ("fp32", "int8"):
        meta = read_metadata(native_run[precision])
        pre = meta.preprocessing
        assert pre["mode"] == "crops" and pre["max_crops"] == 4 and pre["combine"] in ("mean", "mean_logit", "max")
        assert meta.input_size == CROP and "NPR" in pre["front_end"]
        assert meta.training["sources"] == ["data"] and meta.training["image_sizes"]["long_side"][2] <= 178
    # The int8 file keeps the NPR front end in float (its residual would lose most of its values to one int8 scale).
    kept = read_metadata(native_run["int8"]).calibration["keep_float"]["ops"]
    assert {"SUB", "TANH", "RESIZE_NEAREST_NEIGHBOR"} <= set(kept), kept


@pytest.mark.slow  # the native_run fixture trains (30 s)
def test_keras_and_tflite_agree_per_image_on_real_size_images(native_run, tmp_path):
    """The Keras model, the fp32 file and the int8 file give the same per-image answer on images of their own size."""
    import keras

    from edgedetect.predict import predict_files
    from edgedetect.preprocess import open_image
    from edgedetect.runtime import Classifier
    from training.keras_model import predict_keras

    images = _write_native_folder(tmp_path / "held_out", n_per_class=6, seed=7)
    model = keras.saving.load_model(native_run["run"] / "best.keras")
    fp32 = Classifier(native_run["fp32"])
    results = {p: predict_files(Classifier(native_run[p]), [str(images)]) for p in ("fp32", "int8")}
    paths = [r["path"] for r in results["fp32"]]
    expected = []
    for path in paths:
        crops, _, _ = native_crops(open_image(path), CROP, 4)
        expected.append(fp32.combine(predict_keras(model, crops)))
    np.testing.assert_allclose([r["p_fake"] for r in results["fp32"]], expected, atol=1e-4)
    int8 = [r["p_fake"] for r in results["int8"]]
    np.testing.assert_allclose(int8, expected, atol=0.08)
    assert all(r["model"] == native_run["fp32"].name and r["warning"] is None for r in results["fp32"])


@pytest.mark.slow  # the native_run fixture trains (30 s)
def test_auto_model_routes_by_size_and_says_which(native_run, tiny_tflite, tmp_path):
    from edgedetect.predict import AutoModel, predict_files
    from edgedetect.runtime import Classifier

    Image.new("RGB", (16, 16), (90, 40, 20)).save(tmp_path / "small.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 120, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    auto = AutoModel(Classifier(tiny_tflite["fp32"]), Classifier(native_run["fp32"]))
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in predict_files(auto, [str(tmp_path)])}
    assert by_name["small.png"]["model"] == tiny_tflite["fp32"].name
    assert by_name["big.png"]["model"] == native_run["fp32"].name
    assert by_name["small.png"]["threshold"] == Classifier(tiny_tflite["fp32"]).threshold


@pytest.mark.slow  # the native_run fixture trains (30 s)
def test_out_of_domain_images_carry_a_warning(native_run, tiny_tflite, tmp_path):
    from edgedetect.predict import predict_files
    from edgedetect.runtime import Classifier

    Image.new("RGB", (400, 300), (10, 20, 30)).save(tmp_path / "photo.png")
    Image.new("RGB", (16, 16), (10, 20, 30)).save(tmp_path / "tiny.png")
    small_model = {r["path"].rsplit("/", 1)[1]: r for r in predict_files(Classifier(tiny_tflite["fp32"]), [str(tmp_path)])}
    assert "400x300 px resized to 16 px" in small_model["photo.png"]["warning"]
    assert small_model["tiny.png"]["warning"] is None
    photo_model = {r["path"].rsplit("/", 1)[1]: r for r in predict_files(Classifier(native_run["fp32"]), [str(tmp_path)])}
    assert "smaller than the model's 32-px crop: mirror-padded" in photo_model["tiny.png"]["warning"]
    assert photo_model["photo.png"]["warning"] is None
