"""`edgedetect bench`: the JSON contract, drift, perturbations, bad files, no TensorFlow, and the fast JPEG path."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import CIFAKE_TEST, REPO, TF_BLOCKER, TINY_SIZE, needs_shared_data, write_image_folder
from edgedetect import bench
from edgedetect.bench import run as bench_run
from edgedetect.bench import (BenchConfig, family_reference, load_image_set, load_perturbed, parse_perturbations,
                              run_bench)
from edgedetect.errors import EdgeDetectError
from edgedetect.preprocess import _decode_plain_jpeg, load_image


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("bench") / "data", n_per_class=12, size=TINY_SIZE, fmt="jpg")


def _quick(models, data, **kw) -> dict:
    return run_bench(BenchConfig(models=[str(m) for m in models], data=str(data) if data else None, runs=5, warmup=1,
                                 workers=1, **kw))


def test_json_contract_accuracy_and_zero_drift_against_itself(tiny_tflite, folder):
    doc = _quick([tiny_tflite["fp32"], tiny_tflite["int8"]], folder, reference=str(tiny_tflite["fp32"]))
    assert doc["data"] == str(folder) and doc["n_images"] == 24 and doc["reference"] == str(tiny_tflite["fp32"])
    assert {"cpu", "cores", "threads", "os", "arch", "interpreter", "python", "numpy"} <= set(doc["host"])
    fp32, int8 = doc["rows"]
    for row in (fp32, int8):
        assert set(bench.CONTRACT_KEYS) <= set(row)
        assert row["size_bytes"] > 0 and 0 < row["latency_ms_p50"] <= row["latency_ms_p90"]
        assert row["throughput_ips"] > 0
        assert row["accuracy"] >= 0.85 and 0 <= row["roc_auc"] <= 1  # the tiny model learned this synthetic task
        assert 0 <= row["precision_fake"] <= 1 and 0 <= row["recall_fake"] <= 1 and 0 <= row["f1"] <= 1
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert fp32["delta_accuracy"] == 0.0 and fp32["agreement"] == 1.0 and fp32["max_abs_dp"] == 0.0
    assert 0 < int8["max_abs_dp"] < 0.2 and int8["agreement"] >= 0.9  # quantization moves p_fake a little
    assert int8["delta_accuracy"] == pytest.approx(int8["accuracy"] - fp32["accuracy"])
    assert doc["errors"] == []


def test_default_reference_is_the_fp32_sibling(tiny_tflite, tmp_path):
    for precision in ("fp32", "int8"):
        for suffix in (".tflite", ".json"):
            shutil.copy(tiny_tflite[precision].with_suffix(suffix), tmp_path / f"fam_{precision}{suffix}")
    shutil.copy(tiny_tflite["int8"], tmp_path / "lonely_int8.tflite")
    assert family_reference(tmp_path / "fam_int8.tflite") == tmp_path / "fam_fp32.tflite"
    assert family_reference(tmp_path / "fam_fp32.tflite") == tmp_path / "fam_fp32.tflite"
    assert family_reference(tmp_path / "lonely_int8.tflite") is None


def test_without_data_only_size_and_latency_are_measured(tiny_tflite):
    doc = _quick([tiny_tflite["int8"]], None)
    (row,) = doc["rows"]
    assert doc["data"] is None and doc["n_images"] == 0 and row["latency_ms_p50"] > 0
    assert all(row[k] is None for k in ("throughput_ips", "accuracy", "roc_auc", "delta_accuracy", "agreement"))


@pytest.mark.parametrize("spec", ["jpeg:10", "resize:0.5", "blur:1.5"])
def test_perturbation_changes_the_input_but_not_its_shape(folder, spec):
    (p,) = parse_perturbations(spec)
    src = next(folder.rglob("*.jpg"))
    clean, perturbed = load_image(src, TINY_SIZE), load_perturbed(src, TINY_SIZE, p)
    assert perturbed.shape == clean.shape and perturbed.dtype == np.uint8
    assert np.abs(perturbed.astype(int) - clean.astype(int)).mean() > 1.0
    np.testing.assert_array_equal(load_perturbed(src, TINY_SIZE, None), clean)


def test_perturbed_accuracy_is_measured_on_perturbed_images(tiny_tflite, folder):
    # The synthetic FAKE images are the noisy ones: a strong blur wipes out the noise, so they pass for REAL.
    doc = _quick([tiny_tflite["fp32"]], folder, perturb="blur:3,jpeg:95")
    (row,) = doc["rows"]
    assert doc["perturbations"] == ["blur:3", "jpeg:95"]
    blur, jpeg = row["perturbations"]["blur:3"], row["perturbations"]["jpeg:95"]
    assert blur["accuracy"] <= row["accuracy"] - 0.25 and blur["agreement"] < 0.8
    assert jpeg["accuracy"] >= row["accuracy"] - 0.1 and jpeg["agreement"] >= 0.9


@pytest.mark.parametrize("spec, bad", [("jpeg:0", "jpeg:0"), ("jpeg:50.5", "jpeg:50.5"), ("resize:1.5", "resize:1.5"),
                                       ("blur:-1", "blur:-1"), ("sharpen:2", "sharpen:2"), ("jpeg", "jpeg"),
                                       ("jpeg:50,,blur:1", "''")])
def test_invalid_perturbation_spec_is_one_clear_error(spec, bad):
    with pytest.raises(EdgeDetectError, match=rf"--perturb .*cannot use '?{bad}'?; valid: jpeg:Q .* e\.g\. --perturb"):
        parse_perturbations(spec)


def test_perturbation_spec_is_parsed_in_order_without_repeats():
    parsed = parse_perturbations(" JPEG:50, resize:0.5,blur:1.0,jpeg:50")
    assert [p.name for p in parsed] == ["jpeg:50", "resize:0.5", "blur:1"]


def test_options_that_need_data_say_so(tiny_tflite):
    with pytest.raises(EdgeDetectError, match="--perturb needs --data"):
        _quick([tiny_tflite["int8"]], None, perturb="jpeg:50")


def test_no_models_and_none_shipped_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(bench_run, "shipped_models", lambda: [])
    with pytest.raises(EdgeDetectError, match="no models given and no shipped models in .*; pass .tflite files"):
        run_bench(BenchConfig())


def test_archive_and_folder_give_the_same_images_and_limit_samples_both_classes(folder, tmp_path):
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="data")
    from_folder, from_archive = load_image_set(folder), load_image_set(archive)
    assert [f"data/{r}" for r in from_folder.relpaths] == from_archive.relpaths
    np.testing.assert_array_equal(from_folder.labels, from_archive.labels)
    assert from_archive.read_s > 0 and from_folder.read_s == 0
    limited = load_image_set(folder, limit=4)
    assert len(limited) == 4 and limited.n_found == 24 and set(limited.labels) == {0, 1}


def test_cli_without_tensorflow_with_workers_bad_file_csv_and_plot(cli, tiny_tflite, folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(folder, data)
    (data / "REAL" / "broken.jpg").write_bytes(b"not a jpeg at all")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(TF_BLOCKER)  # as sitecustomize it also blocks the spawned workers
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}

    blocked = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env)
    assert "blocked by the test" in blocked.stderr  # the blocker does block
    out_csv, out_png = tmp_path / "bench.csv", tmp_path / "bench.png"
    proc = cli.run("bench", tiny_tflite["fp32"], tiny_tflite["int8"], "--data", data, "--json",
               "--workers", "2", "--runs", "5", "--perturb", "jpeg:50", "--csv", out_csv, "--plot", out_png, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr  # one unreadable file: reported, the rest measured
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert doc["n_images"] == 24 and doc["host"]["workers"] == 2
    assert doc["host"]["interpreter"].startswith(("ai-edge-litert", "tflite-runtime"))
    assert [e["path"] for e in doc["errors"]] == ["REAL/broken.jpg"] and "broken.jpg" in proc.stderr
    int8 = doc["rows"][1]
    assert int8["reference"] == str(tiny_tflite["fp32"]) and int8["agreement"] >= 0.9  # default: the fp32 sibling
    assert set(int8["perturbations"]["jpeg:50"]) == {"accuracy", "roc_auc", "agreement"}
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["model"] for r in rows] == [str(tiny_tflite["fp32"]), str(tiny_tflite["int8"])]
    assert set(bench.CONTRACT_KEYS) | {"accuracy_jpeg:50"} <= set(rows[0])
    assert float(rows[1]["accuracy"]) == pytest.approx(int8["accuracy"])
    with Image.open(out_png) as img:
        assert img.format == "PNG" and img.width >= 600


def test_cli_table_and_error_lines(cli, tiny_tflite, folder, tmp_path):
    result = cli.invoke("bench", tiny_tflite["int8"], "--data", folder, "--workers", "1", "--runs", "3")
    assert result.exit_code == 0, result.output
    assert "tiny_int8" in result.output and "img/s" in result.output and "host:" in result.output
    bad = cli.invoke("bench", tiny_tflite["int8"], "--data", folder, "--perturb", "zoom:2")
    assert bad.exit_code != 0 and isinstance(bad.exception, EdgeDetectError)


# The fast JPEG path in edgedetect.preprocess must give exactly what Pillow's general path gives.
def _general_path(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.load()
    return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("size", [(32, 32), (33, 17), (1, 1), (300, 201)])
@pytest.mark.parametrize("options", [{"quality": 75}, {"quality": 95, "subsampling": 0},
                                     {"quality": 30, "subsampling": 1}, {"progressive": True},
                                     {"optimize": True, "quality": 5}, {"icc_profile": b"\0" * 64}])
def test_fast_jpeg_path_gives_identical_pixels(size, options):
    rng = np.random.default_rng(sum(size))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG", **options)
    data = buf.getvalue()
    fast = _decode_plain_jpeg(data)
    assert fast is not None
    np.testing.assert_array_equal(np.asarray(fast), _general_path(data))


def _exif_upright() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 1
    return exif


def _jpeg(**kw) -> bytes:
    buf = io.BytesIO()
    mode = kw.pop("mode", "RGB")
    color = {"L": 100, "RGB": (10, 200, 30), "CMYK": (1, 2, 3, 4)}[mode]
    Image.new(mode, (8, 8), color).save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("data", [
    _jpeg(exif=_exif_upright()),  # EXIF may carry an orientation: the general path reads and applies it
    _jpeg(xmp=b'<x:xmpmeta><tiff:Orientation>6</tiff:Orientation></x:xmpmeta>'),
    _jpeg(mode="L"), _jpeg(mode="CMYK"), _jpeg()[:40], b"\xff\xd8 not really", b"GIF89a",
], ids=["exif", "xmp", "gray", "cmyk", "truncated", "garbage", "gif"])
def test_fast_jpeg_path_leaves_everything_else_to_the_general_path(data):
    assert _decode_plain_jpeg(data) is None


def test_fast_jpeg_path_on_every_cifake_test_image():
    needs_shared_data()
    n = 0
    with tarfile.open(CIFAKE_TEST) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                data = tar.extractfile(member).read()
                fast = _decode_plain_jpeg(data)
                assert fast is not None, member.name
                np.testing.assert_array_equal(np.asarray(fast), _general_path(data), err_msg=member.name)
                n += 1
    assert n == 9816
