"""The README's quick start, run as a user would, against the shipped default model (no --model, no network)."""

import json
import subprocess
import sys

import pytest

from conftest import CIFAKE_TEST, REPO, needs_shared_data

CLI = [sys.executable, "-m", "edgedetect"]


def run(*args):
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_readme_predict_on_the_sample_images_uses_the_default_model():
    done = run("predict", "imgs/real", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    default = json.loads((REPO / "models" / "default.json").read_text())["model"]
    assert doc["model"].endswith(default)
    assert len(doc["results"]) == len(list((REPO / "imgs" / "real").glob("*.jpg"))) >= 5
    for r in doc["results"]:
        assert r["error"] is None and r["label"] in ("REAL", "FAKE") and 0.0 <= r["p_fake"] <= 1.0
        assert r["label"] == ("FAKE" if r["p_fake"] >= doc["threshold"] else "REAL")


def test_readme_info_describes_every_shipped_model():
    for model in sorted((REPO / "models").glob("*.tflite")):
        done = run("info", str(model), "--json")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["input"]["shape"][1:] == [32, 32, 3]
        assert doc["metadata"]["precision"] in model.stem  # the file name carries the precision
        assert doc["metadata"]["labels"] == ["REAL", "FAKE"]


def test_default_model_meets_its_accuracy_target_on_the_cifake_test_half():
    """The model card's claim: default int8 >= 97.5% on the clean CIFAKE test half, within 0.3 points of fp32."""
    needs_shared_data()
    from edgedetect.bench import family_reference

    default = REPO / "models" / json.loads((REPO / "models" / "default.json").read_text())["model"]
    reference = family_reference(default)
    assert default.stem.endswith("_int8") and reference is not None and reference != default
    scores = {}
    for precision, model in (("int8", default), ("fp32", reference)):
        done = run("evaluate", str(model), "--data", str(CIFAKE_TEST), "--split", "test", "--json")
        assert done.returncode == 0, done.stderr
        scores[precision] = json.loads(done.stdout)
        assert scores[precision]["n"] == 9816
    assert scores["int8"]["accuracy"] >= 0.975
    assert abs(scores["int8"]["accuracy"] - scores["fp32"]["accuracy"]) <= 0.003
