"""`edgedetect explain`: occlusion maps with the interpreter alone, crop maps, Grad-CAM for .keras, the picture."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TF_PACKAGES, TINY_SIZE
from edgedetect.errors import EdgeDetectError
from edgedetect.explain import Explanation, crop_map, occlusion_boxes, occlusion_map

QUADRANT = (slice(0, TINY_SIZE // 2), slice(TINY_SIZE // 2, TINY_SIZE))  # top-right: rows, cols


def planted(size: int = TINY_SIZE, seed: int = 3) -> np.ndarray:
    """A smooth gradient (REAL for the tiny model) with FAKE evidence, pixel noise, only in the top-right quadrant."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)
    x = 90 + 60 * ramp[:, None, None] + 30 * ramp[None, :, None] + np.zeros((size, size, 3))
    rows, cols = (slice(0, size // 2), slice(size // 2, size))
    x[rows, cols] += rng.normal(0, 45, (size // 2, size // 2, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


def peak_in_quadrant(heat: np.ndarray) -> bool:
    row, col = np.unravel_index(int(np.nanargmax(heat)), heat.shape)
    rows, cols = heat.shape
    return row < rows // 2 and col >= cols // 2


# --- crop_map: the map of native-resolution models, from per-crop boxes and scores ---

def test_crop_map_is_the_mean_score_of_the_covering_boxes():
    boxes = [(0, 0, 6, 4), (4, 0, 10, 4)]  # overlap in columns 4-5
    heat = crop_map((12, 5), boxes, [0.2, 0.8])
    assert heat.shape == (5, 12)
    assert np.allclose(heat[:4, :4], 0.2) and np.allclose(heat[:4, 6:10], 0.8)
    assert np.allclose(heat[:4, 4:6], 0.5)
    assert np.isnan(heat[4]).all() and np.isnan(heat[:, 10:]).all()  # covered by no box


def test_crop_map_cells_are_block_means_and_boxes_are_clipped():
    boxes = [(0, 0, 8, 8), (8, 0, 16, 8), (0, 8, 8, 16), (8, 8, 20, 20)]  # the last reaches past the image
    scores = [0.1, 0.9, 0.3, 0.7]
    full = crop_map((16, 16), boxes, scores)
    coarse = crop_map((16, 16), boxes, scores, cell=4)
    assert coarse.shape == (4, 4)
    assert np.allclose(coarse, full.reshape(4, 4, 4, 4).mean(axis=(1, 3)))
    assert coarse[0, 3] == pytest.approx(0.9) and coarse[3, 0] == pytest.approx(0.3)
    assert crop_map((15, 15), boxes, scores, cell=4).shape == (4, 4)  # a partial last cell still counts


def test_crop_map_refuses_mismatched_or_empty_boxes():
    with pytest.raises(EdgeDetectError, match=r"2 boxes but 1 scores"):
        crop_map((8, 8), [(0, 0, 4, 4), (4, 4, 8, 8)], [0.5])
    with pytest.raises(EdgeDetectError, match=r"empty box \(4, 0, 4, 8\)"):
        crop_map((8, 8), [(4, 0, 4, 8)], [0.5])


# --- occlusion ---

def test_occlusion_boxes_cover_every_pixel_and_bad_settings_are_refused():
    boxes = occlusion_boxes(32, 8, 3)  # 3 does not divide 24: the last row/column is added
    covered = crop_map((32, 32), boxes, np.ones(len(boxes)), empty=0.0)
    assert covered.min() == 1.0 and len(boxes) == 9 * 9
    with pytest.raises(EdgeDetectError, match=r"--patch 40: must be between 1 and the model's input size 32"):
        occlusion_boxes(32, 40, 2)
    with pytest.raises(EdgeDetectError, match=r"--stride 9: must be between 1 and the patch size 8"):
        occlusion_boxes(32, 8, 9)


def test_occlusion_runs_everything_in_one_batch_and_finds_the_planted_region():
    calls = []

    def noise_detector(batch):  # p_fake = high-frequency energy, a stand-in for a model
        calls.append(len(batch))
        b = batch.astype(float)
        return np.abs(np.diff(b, axis=2)).mean(axis=(1, 2, 3)) / 50

    p, heat, n = occlusion_map(noise_detector, planted(), patch=4, stride=1)
    assert calls == [n] and n == 13 * 13 + 1
    assert heat.shape == (TINY_SIZE, TINY_SIZE) and peak_in_quadrant(heat)
    assert heat[QUADRANT].mean() > 5 * abs(heat[TINY_SIZE // 2:, : TINY_SIZE // 2].mean())


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_occlusion_peak_is_in_the_planted_region_for_a_real_model(tiny_tflite, precision):
    from edgedetect.explain import Explainer
    from edgedetect.runtime import Classifier

    explainer = Explainer(Classifier(tiny_tflite[precision], threads=1))
    e, _ = explainer.explain(_png(planted()))
    assert (e.n_images, e.n_invokes) == (170, 1)  # default patch 4, stride 1 at 16 px
    assert e.heatmap.shape == (TINY_SIZE, TINY_SIZE) and peak_in_quadrant(e.heatmap), e.peak()
    assert e.heatmap[QUADRANT].mean() > 2 * e.heatmap.mean()  # the evidence sits there, not just its peak
    plain = explainer.clf.predict(planted()[None])[0]
    assert e.p_fake == pytest.approx(plain)  # the explained decision is the predicted one


def _png(x: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    return buf.getvalue()


# --- Grad-CAM (.keras, needs the [train] extra) ---

def test_gradcam_peak_is_in_the_planted_region(tiny_keras_model, tmp_path):
    from training.gradcam import GradCamExplainer

    path = tmp_path / "planted.png"
    path.write_bytes(_png(planted()))
    e, _ = GradCamExplainer(tiny_keras_model).explain(path)
    assert e.method == "grad-cam" and e.params["layers"] == ["conv2d_1"]
    assert e.heatmap.shape == (TINY_SIZE, TINY_SIZE) and e.heatmap.max() == pytest.approx(1.0)
    assert peak_in_quadrant(e.heatmap), e.peak()
    assert e.heatmap[QUADRANT].mean() > 2 * e.heatmap.mean()


def test_explain_cli_picks_gradcam_for_a_keras_model(cli, tiny_keras_model, tmp_path):
    image = tmp_path / "planted.png"
    image.write_bytes(_png(planted()))
    code, out, err = cli("explain", image, "--model", tiny_keras_model, "--json",
                             "--out", tmp_path / "pictures")
    assert code == 0, err
    r = json.loads(out)["results"][0]
    assert r["method"] == "grad-cam" and (tmp_path / "pictures" / "planted.png").is_file()
    code, _, err = cli("explain", image, "--model", tiny_keras_model, "--patch", "4")
    assert code == 1 and "--patch, --stride and --fill set the occlusion method" in err


def test_a_keras_model_without_tensorflow_is_a_one_line_error(cli, tiny_keras_model, tmp_path):
    image = tmp_path / "planted.png"
    image.write_bytes(_png(planted()))
    proc = cli.run("explain", image, "--model", tiny_keras_model, "--out", tmp_path, block=TF_PACKAGES)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tiny_keras_model}: explaining a .keras model (Grad-CAM) needs TensorFlow and Keras (No module named "
        "'keras' (blocked by the test)); pip install 'edgedetect[train]', or explain its .tflite instead"]


# --- the command, on the runtime alone ---

def test_explain_cli_without_tensorflow_writes_pictures_and_numbers(cli, tiny_tflite, tmp_path):
    image, broken = tmp_path / "planted.png", tmp_path / "broken.jpg"
    image.write_bytes(_png(planted()))
    broken.write_bytes(b"not an image")
    out = tmp_path / "pictures"
    proc = cli.run("explain", image, broken, "--model", tiny_tflite["int8"], "--out", out, "--json", block=TF_PACKAGES)
    assert proc.returncode == 1, proc.stderr  # one input failed
    doc = json.loads(proc.stdout)
    ok, bad = doc["results"]
    assert bad == {"path": str(broken), "label": None, "p_fake": None, "error": "not an image file Pillow can read",
                   "png": None}
    assert ok["invokes"] == 1 and ok["images_run"] == 170 and ok["label"] in ("REAL", "FAKE")
    assert np.array(ok["map"]["values"], dtype=float).shape == (TINY_SIZE, TINY_SIZE)
    assert ok["map"]["peak"]["row"] < TINY_SIZE // 2 and ok["map"]["peak"]["col"] >= TINY_SIZE // 2
    with Image.open(out / "planted.png") as pic:
        assert pic.format == "PNG" and pic.width >= 600

    # Running again replaces the pictures explain wrote; any other file in the way is kept unless --force.
    proc = cli.run("explain", image, "--model", tiny_tflite["int8"], "--out", out, block=TF_PACKAGES)
    assert proc.returncode == 0, proc.stderr
    (out / "planted.png").write_bytes(b"my own file")
    proc = cli.run("explain", image, "--model", tiny_tflite["int8"], "--out", out, block=TF_PACKAGES)
    assert proc.returncode == 1 and "planted.png already exists and is not a picture edgedetect explain wrote" in proc.stderr
    assert (out / "planted.png").read_bytes() == b"my own file"


def test_explain_the_shipped_pair_on_the_mission_sample(cli, tmp_path):
    """`edgedetect explain imgs/fake/5.jpg --json`: the photo model decides, as in predict, and maps its crops."""
    from edgedetect.predict import load_default_models, predict_files

    sample = REPO / "imgs" / "fake" / "5.jpg"
    code, out, err = cli("explain", sample, "--out", tmp_path, "--json")
    assert code == 0, err
    r = json.loads(out)["results"][0]
    (expected,) = predict_files(load_default_models(threads=1), [str(sample)])
    assert r["model"] == expected["model"] == "photo_npr96_int8.tflite" and r["method"] == "crops"
    assert r["label"] == expected["label"] == "FAKE" and r["p_fake"] == pytest.approx(expected["p_fake"], abs=1e-6)
    assert r["images_run"] == r["params"]["crops"] == 16 and (tmp_path / "5.png").is_file()


def test_explain_the_shipped_32px_model_on_a_sample_photo(cli, tmp_path):
    code, out, err = cli("explain", REPO / "imgs" / "real" / "cat.jpg", "--out", tmp_path,
                             "--json", "--model", REPO / "models" / "cnn_pair32_int8.tflite")
    assert code == 0, err
    doc = json.loads(out)
    r = doc["results"][0]
    assert r["label"] == "REAL" and r["invokes"] == 1 and r["images_run"] == 170
    assert r["map"]["region"] == [75, 0, 375, 300]  # the centre square of the 451x300 photo, what the model sees
    assert r["map"]["shape"] == [16, 16]  # one cell per 2x2 pixels of the 32x32 input (the stride)
    assert "170 images in 1 invoke" in doc["method"]


def test_explain_and_serve_need_neither_tensorflow_nor_matplotlib():
    code = ("import sys\n"
            "import edgedetect.explain, edgedetect.explain_render, edgedetect.serve, edgedetect.serve_page\n"
            "import edgedetect.commands.explain, edgedetect.commands.serve\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'training', 'conversion', "
            "'matplotlib'}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- the picture ---

def test_picture_title_shows_p_fake_against_the_threshold():
    from edgedetect.explain_render import decision_line, render_explanation

    e = Explanation(path="a.png", label="FAKE", p_fake=0.463, threshold=0.434, method="occlusion",
                    heatmap=np.zeros((32, 32)), region=(0, 0, 32, 32), image_size=(32, 32),
                    params={"input_size": 32})
    assert decision_line(e) == "FAKE · p_fake 0.463 ≥ threshold 0.434"
    e.label, e.p_fake = "REAL", 0.2
    assert decision_line(e) == "REAL · p_fake 0.200 < threshold 0.434"
    pic = render_explanation(e, Image.new("RGB", (32, 32), "gray"))
    assert pic.size[0] >= 600 and pic.mode == "RGB"


def test_an_ensembles_gradcam_is_the_mean_of_its_members(tiny_keras_model):
    import keras

    from training.ensemble import build_ensemble
    from training.gradcam import gradcam

    member = keras.saving.load_model(tiny_keras_model)
    single, _ = gradcam(member, planted())
    pair, layers = gradcam(build_ensemble([member, member]), planted())
    assert layers == ["member0_" + member.name + "/conv2d_1", "member1_" + member.name + "/conv2d_1"]
    assert np.allclose(pair, single, atol=1e-5)


def test_a_crops_model_is_explained_by_its_crop_scores(tiny_tflite, tmp_path, monkeypatch):
    """Native-resolution models: the runtime's crop function gives boxes, their p_fake is the map (no extra invokes)."""
    import shutil

    from edgedetect.explain import Explainer
    from edgedetect.metadata import read_metadata, write_metadata
    from edgedetect.runtime import Classifier

    model = tmp_path / "crops_int8.tflite"
    shutil.copy(tiny_tflite["int8"], model)
    meta = read_metadata(tiny_tflite["int8"])
    # the tiny model, declared a crops model: 16-px crops at native resolution, mean of up to 8 per image
    meta.preprocessing = {**meta.preprocessing, "mode": "crops", "max_crops": 8, "combine": "mean"}
    write_metadata(model, meta)
    rows, cols = np.linspace(0, 1, 32), np.linspace(0, 1, 64)
    image = (90 + 60 * rows[:, None, None] + 30 * cols[None, :, None] + np.zeros((32, 64, 3))).astype(np.uint8)
    image[:16, 48:64] = planted()  # smooth everywhere but in the top-right crop, which holds the noisy quadrant
    e, img = Explainer(Classifier(model, threads=1)).explain(_png(image))
    assert e.method == "crops" and e.n_images == 8 and e.n_invokes == 1
    assert e.region == (0, 0, 64, 32) and e.neutral == e.threshold
    assert e.heatmap.shape == (16, 32)  # one cell per 2x2 pixels (crop_size // 8)
    assert e.peak()["image_xy"][0] >= 48 and e.peak()["image_xy"][1] < 16
    from edgedetect.explain_render import render_explanation

    assert render_explanation(e, img).width >= 600  # the crops picture draws too
