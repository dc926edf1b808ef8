"""The README's quick start, run as a user would, against the shipped default model (no --model, no network)."""

import json
from pathlib import Path

import pytest

from conftest import CIFAKE_TEST, REPO, needs_shared_data

def test_readme_predict_on_the_sample_images_uses_the_default_pair(cli):
    """The README's quick start: every real sample REAL, imgs/fake/5.jpg FAKE, each result naming its model."""
    done = cli.run("predict", "imgs/fake", "imgs/real", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    manifest = json.loads((REPO / "models" / "default.json").read_text())
    assert [Path(m).name for m in doc["model"]] == [manifest["model"], manifest["photo_model"]]
    samples = sorted(p for p in (REPO / "imgs").rglob("*") if p.suffix in (".jpg", ".webp"))
    assert len(doc["results"]) == len(samples) >= 10
    by_name = {}
    for r in doc["results"]:
        assert r["error"] is None and r["label"] in ("REAL", "FAKE") and 0.0 <= r["p_fake"] <= 1.0
        assert r["label"] == ("FAKE" if r["p_fake"] >= r["threshold"] else "REAL")
        assert r["model"] == doc["models"][r["model"]]["path"].rsplit("/", 1)[1] and r["warning"] is None
        by_name[r["path"]] = r
    assert all(r["label"] == "REAL" for p, r in by_name.items() if p.startswith("imgs/real/"))
    assert by_name["imgs/fake/5.jpg"]["label"] == "FAKE"


@pytest.mark.slow  # 12 s: one process per shipped model
def test_readme_info_describes_every_shipped_model(cli):
    for model in sorted((REPO / "models").glob("*.tflite")):
        done = cli.run("info", str(model), "--json", timeout=300)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        crops = doc["metadata"]["preprocessing"].get("mode") == "crops"
        assert doc["input"]["shape"][1:] == ([96, 96, 3] if crops else [32, 32, 3])
        assert doc["metadata"]["precision"] in model.stem  # the file name carries the precision
        assert doc["metadata"]["labels"] == ["REAL", "FAKE"]


@pytest.mark.slow  # 17 s: 2 x 9,816 images
def test_default_model_meets_its_accuracy_target_on_the_cifake_test_half(cli):
    """The model card's claim: default int8 >= 97.5% on the clean CIFAKE test half, within 0.3 points of fp32."""
    needs_shared_data()
    from edgedetect.bench import family_reference

    default = REPO / "models" / json.loads((REPO / "models" / "default.json").read_text())["model"]
    reference = family_reference(default)
    assert default.stem.endswith("_int8") and reference is not None and reference != default
    scores = {}
    for precision, model in (("int8", default), ("fp32", reference)):
        done = cli.run("evaluate", str(model), "--data", str(CIFAKE_TEST), "--split", "test", "--json", timeout=300)
        assert done.returncode == 0, done.stderr
        scores[precision] = json.loads(done.stdout)
        assert scores[precision]["n"] == 9816
    assert scores["int8"]["accuracy"] >= 0.975
    assert abs(scores["int8"]["accuracy"] - scores["fp32"]["accuracy"]) <= 0.003


def test_every_shipped_model_has_a_card_and_an_fp32_reference():
    from edgedetect.precision import split_stem

    cards = (REPO / "models" / "README.md").read_text(encoding="utf-8")
    shipped = sorted((REPO / "models").glob("*.tflite"))
    assert shipped
    for model in shipped:
        assert model.with_suffix(".json").is_file(), f"{model.name} has no metadata beside it"
        family, precision = split_stem(model.stem)
        assert f"`{model.name}`" in cards or f"## `{family}_*`" in cards, f"{model.name} has no card in models/README.md"
        assert precision is not None, f"{model.name}: the stem names no precision"
        if precision.name != "fp32":  # bench's drift columns compare each file with its fp32 sibling
            assert (model.parent / f"{family}_fp32.tflite").is_file(), model.name
