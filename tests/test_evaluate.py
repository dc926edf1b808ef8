"""`edgedetect evaluate` on the tiny fixture models (.keras and .tflite) over synthetic labelled folders."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TF_BLOCKER, TF_PACKAGES, TINY_SIZE, write_image_folder
from edgedetect.data import load_dataset
from edgedetect.evaluate import EvalConfig, evaluate, worst_mistakes
from edgedetect.metrics import binary_metrics, optimal_threshold
from edgedetect.runtime import Classifier

# Keras 3.15 on numpy 2 warns on every eager tensor conversion; not ours to fix, and it floods the output.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "threshold", "n",
        "model", "data", "split", "balanced_accuracy", "threshold_source"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """train (val carved from it) and test splits, 20 images per class each, different images."""
    root = tmp_path_factory.mktemp("evaldata") / "synthetic"
    write_image_folder(root, n_per_class=20, size=TINY_SIZE, split="train", seed=4)
    write_image_folder(root, n_per_class=20, size=TINY_SIZE, split="test", seed=3)
    return root


@pytest.fixture(scope="module")
def test_only(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("testonly") / "t", n_per_class=5, size=TINY_SIZE, split="test")


def evaluate_json(cli, *args) -> dict:
    code, out, err = cli("evaluate", *args, "--json")
    assert code == 0, err
    return json.loads(out)  # stdout is exactly one JSON document


def test_json_keras_and_tflite_agree_and_match_the_runtime(cli, tiny_keras_model, tiny_tflite, data):
    docs = {name: evaluate_json(cli, path, "--data", data)
            for name, path in [("keras", tiny_keras_model), *tiny_tflite.items()]}
    for doc in docs.values():
        assert KEYS <= set(doc)
        assert doc["split"] == "test" and doc["n"] == 40 and doc["threshold"] == 0.5
        assert sum(map(sum, doc["confusion_matrix"])) == 40
        assert doc["accuracy"] >= 0.9  # the tiny model learned the synthetic task
    keras_doc, fp32 = docs["keras"], docs["fp32"]
    assert keras_doc["confusion_matrix"] == fp32["confusion_matrix"]
    for key in ("accuracy", "precision", "recall", "f1", "balanced_accuracy"):
        assert keras_doc[key] == fp32[key]
    assert keras_doc["roc_auc"] == pytest.approx(fp32["roc_auc"], abs=1e-6)
    assert abs(docs["int8"]["accuracy"] - fp32["accuracy"]) <= 0.05
    assert "default 0.5" in keras_doc["threshold_source"] and "metadata" in fp32["threshold_source"]

    # The same numbers as predict's path: the runtime Classifier on the dataset loader's arrays.
    test = load_dataset(data, TINY_SIZE, use_cache=False, progress=False).split("test")
    expected = binary_metrics(test.y, Classifier(tiny_tflite["int8"]).predict(test.x), 0.5)
    assert {k: docs["int8"][k] for k in expected} == expected


def test_threshold_comes_from_option_metadata_or_run(cli, tiny_keras_model, tiny_tflite, data, tmp_path):
    tflite = tmp_path / "m.tflite"
    shutil.copy(tiny_tflite["fp32"], tflite)
    meta = json.loads(tiny_tflite["fp32"].with_suffix(".json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**meta, "threshold": 0.7}))
    doc = evaluate_json(cli, tflite, "--data", data)
    assert doc["threshold"] == 0.7 and doc["threshold_source"] == "model metadata (m.json)"
    doc = evaluate_json(cli, tflite, "--data", data, "--threshold", 0.3)
    assert doc["threshold"] == 0.3 and doc["threshold_source"] == "--threshold"

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_keras_model, run / "best.keras")
    (run / "metrics.json").write_text(json.dumps({"threshold": 0.25, "threshold_method": "youden J on val"}))
    doc = evaluate_json(cli, run / "best.keras", "--data", data)
    assert doc["threshold"] == 0.25 and "youden J on val" in doc["threshold_source"]
    assert doc["confusion_matrix"] == binary_metrics(*_keras_scores(run / "best.keras", data), 0.25)["confusion_matrix"]

    (tmp_path / "m.json").unlink()
    doc = evaluate_json(cli, tflite, "--data", data)
    assert doc["threshold"] == 0.5 and doc["threshold_source"].startswith("default 0.5")


def _keras_scores(model_path, data):
    test = load_dataset(data, TINY_SIZE, use_cache=False, progress=False).split("test")
    return test.y, _keras_predict(model_path, test.x)


@pytest.mark.parametrize("method", ["youden", "f1"])
def test_optimized_threshold_is_chosen_on_val_never_on_test(tiny_tflite, data, method):
    result = evaluate(EvalConfig(model=str(tiny_tflite["fp32"]), data=str(data), optimize_threshold=method))
    dataset = load_dataset(data, TINY_SIZE, use_cache=False, progress=False)
    assert dataset.val_carved  # the folder has train and test only: val is carved from train
    clf = Classifier(tiny_tflite["fp32"])
    on_val = optimal_threshold(dataset.split("val").y, clf.predict(dataset.split("val").x), method)
    on_test = optimal_threshold(dataset.split("test").y, clf.predict(dataset.split("test").x), method)
    assert on_val != on_test  # so the assertion below tells them apart
    assert result.report["threshold"] == on_val
    assert "val split (carved from train), 4 images" in result.report["threshold_source"]
    assert ("Youden" if method == "youden" else "F1") in result.report["threshold_source"]
    assert result.report == {**result.report, **binary_metrics(result.y, result.p_fake, on_val)}


def test_threshold_on_a_runs_own_data_uses_the_runs_validation_carve(tiny_keras_model, data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_keras_model, run / "best.keras")
    (run / "config.json").write_text(json.dumps({"config": {"data": str(data), "val_fraction": 0.25, "seed": 3}}))
    from training.keras_model import KerasScorer

    result = evaluate(EvalConfig(model=str(run / "best.keras"), data=str(data), optimize_threshold="youden"),
                      scorer=KerasScorer(run / "best.keras"))
    val = load_dataset(data, TINY_SIZE, val_fraction=0.25, seed=3, use_cache=False, progress=False).split("val")
    assert result.report["threshold"] == optimal_threshold(val.y, _keras_predict(run / "best.keras", val.x), "youden")
    assert "val split (carved from train), 10 images" in result.report["threshold_source"]


def _keras_predict(model_path, x):
    import keras

    return keras.saving.load_model(model_path).predict(x.astype("float32"), verbose=0).ravel()


def test_threshold_errors(cli, tiny_tflite, data, test_only):
    model = tiny_tflite["fp32"]
    code, out, err = cli("evaluate", model, "--data", data, "--split", "val", "--optimize-threshold", "youden")
    assert code == 1 and out == ""
    assert err.startswith("error: --optimize-threshold chooses the threshold on the val split, which is the split being evaluated")
    code, _, err = cli("evaluate", model, "--data", test_only, "--optimize-threshold", "f1")
    assert code == 1 and "no val split to choose a threshold on (found: test; a test split is never used" in err
    code, _, err = cli("evaluate", model, "--data", data, "--optimize-threshold", "f1", "--threshold", "0.5")
    assert code == 1 and "--threshold and --optimize-threshold both given" in err
    assert len(err.strip().splitlines()) == 1


def test_exit_codes_and_messages(cli, tiny_tflite, data, test_only, tmp_path):
    model = tiny_tflite["int8"]
    assert cli("evaluate", model, "--data", test_only)[0] == 0
    code, _, err = cli("evaluate", tmp_path / "missing.tflite", "--data", data)
    assert code == 2 and "does not exist" in err
    code, _, err = cli("evaluate", model, "--data", data, "--threshold", "1.5")
    assert code == 2
    code, _, err = cli("evaluate", model, "--data", data, "--optimize-threshold", "auc")
    assert code == 2
    (tmp_path / "model.onnx").write_bytes(b"\0" * 16)
    code, _, err = cli("evaluate", tmp_path / "model.onnx", "--data", data)
    assert code == 1 and err == "error: " + str(tmp_path / "model.onnx") + (
        ": unsupported model type '.onnx'; evaluate takes a .keras (from `edgedetect train`) or a .tflite file\n")
    code, _, err = cli("evaluate", model, "--data", test_only, "--split", "train")
    assert code == 1 and "has no 'train' split (found: test)" in err
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    code, _, err = cli("evaluate", tmp_path / "bad.keras", "--data", data)
    assert code == 1 and "cannot load this Keras model" in err and len(err.strip().splitlines()) == 1


def test_human_output_and_limit(cli, tiny_tflite, data):
    code, out, err = cli("evaluate", tiny_tflite["fp32"], "--data", data, "--limit", 10)
    assert code == 0, err
    assert "split test: 10 of 40 images (seeded random subset)" in out
    for text in ("accuracy", "balanced accuracy", "precision", "recall", "f1", "roc auc", "confusion matrix",
                 "true REAL", "true FAKE", "pred FAKE", "threshold 0.5: model metadata"):
        assert text in out
    doc = evaluate_json(cli, tiny_tflite["fp32"], "--data", data, "--limit", 10)
    assert doc["n"] == 10 and sum(map(sum, doc["confusion_matrix"])) == 10


def test_worst_mistakes_are_the_most_confidently_wrong():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.9, 0.2, 0.1, 0.45, 0.6, 0.8])  # wrong at 0.5: idx 0 (p 0.9), 2 (1-p 0.9), 3 (0.55), 4 (0.6)
    assert worst_mistakes(y, p, 0.5).tolist() == [0, 2, 4, 3]
    assert worst_mistakes(y, p, 0.5, k=2).tolist() == [0, 2]
    assert worst_mistakes(y, p, 0.95).tolist() == [2, 3, 5]  # nothing called FAKE: every FAKE is wrong
    assert worst_mistakes([0, 1], [0.1, 0.9], 0.5).tolist() == []


def test_plots_are_written_and_mistakes_listed(cli, tiny_tflite, data, tmp_path):
    plots = tmp_path / "plots"
    # A threshold of 0 calls every image FAKE, so all 20 REAL images are mistakes.
    doc = evaluate_json(cli, tiny_tflite["fp32"], "--data", data, "--threshold", 0, "--plots", plots)
    names = ["roc.png", "confusion_matrix.png", "worst_mistakes.png"]
    assert doc["plots"] == [str(plots / n) for n in names]
    assert sorted(p.name for p in plots.iterdir()) == sorted(names)  # no temporary files left behind
    for name in names:
        with Image.open(plots / name) as img:
            assert img.format == "PNG" and min(img.size) >= 300
    mistakes = doc["worst_mistakes"]
    (tn, fp), (fn, tp) = doc["confusion_matrix"]
    assert (fp, fn) == (20, 0) and len(mistakes) == 16 and {m["label"] for m in mistakes} == {"REAL"}
    wrong_conf = [m["p_fake"] if m["label"] == "REAL" else 1 - m["p_fake"] for m in mistakes]
    assert wrong_conf == sorted(wrong_conf, reverse=True)

    (tmp_path / "afile").write_text("")
    code, _, err = cli("evaluate", tiny_tflite["fp32"], "--data", data, "--plots", tmp_path / "afile")
    assert code == 1 and "is a file; give a folder" in err


def test_existing_plots_are_replaced_only_with_force(cli, tiny_tflite, data, tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "confusion_matrix.png").write_bytes(b"mine")
    code, out, err = cli("evaluate", tiny_tflite["fp32"], "--data", data, "--plots", plots)
    assert code == 1 and out == ""  # refused before any work: nothing scored or printed
    assert err == f"error: {plots / 'confusion_matrix.png'} already exists; pass --force to overwrite it or choose " \
                  "another output path\n"
    assert sorted(p.name for p in plots.iterdir()) == ["confusion_matrix.png"]
    assert (plots / "confusion_matrix.png").read_bytes() == b"mine"

    doc = evaluate_json(cli, tiny_tflite["fp32"], "--data", data, "--plots", plots, "--force")
    assert len(doc["plots"]) == 3
    with Image.open(plots / "confusion_matrix.png") as img:
        assert img.format == "PNG"


def test_tflite_evaluation_never_imports_tensorflow(cli, tiny_tflite, tiny_keras_model, data, tmp_path):
    def run(*args):
        return cli.run("evaluate", *args, block=TF_PACKAGES)

    assert "blocked by the test" in subprocess.run([sys.executable, "-c", TF_BLOCKER + "import tensorflow"],
                                                   capture_output=True, text=True).stderr
    proc = run(tiny_tflite["int8"], "--data", data, "--json", "--plots", tmp_path / "plots", "--optimize-threshold", "f1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["n"] == 40 and doc["accuracy"] >= 0.9 and len(doc["plots"]) == 3

    proc = run(tiny_keras_model, "--data", data)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (f"error: {tiny_keras_model}: evaluating a .keras model needs Keras "
                                                    "and TensorFlow (pip install 'edgedetect[train]'), or evaluate its .tflite instead")
