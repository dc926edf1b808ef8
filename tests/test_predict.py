"""`edgedetect predict` and `edgedetect info`, run as a user runs them (subprocess), on real files made here."""

import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import CIFAKE_TEST, TINY_SIZE, needs_shared_data, write_image_folder
from edgedetect.errors import EdgeDetectError
from edgedetect.predict import collect_inputs, default_model_path, predict_files
from edgedetect.preprocess import load_image
from edgedetect.runtime import Classifier

# Every result: the verdict, the model that decided (and its threshold), the image size and an out-of-domain warning.
CONTRACT = {"path", "label", "p_fake", "error", "model", "threshold", "size", "warning"}


def predict_json(cli, *args, cwd=None):
    proc = cli.run("predict", *args, "--json", cwd=cwd)
    return proc, json.loads(proc.stdout)  # stdout must be exactly one JSON document


def truth(path: str) -> str:
    return "FAKE" if "/FAKE/" in path else "REAL"


@pytest.fixture()
def folder(tmp_path):
    """12 synthetic images as tmp/imgs/{REAL,FAKE}/<i> (<k>).png: names with spaces and parentheses."""
    return write_image_folder(tmp_path / "imgs", n_per_class=6)


def test_collect_inputs_files_folders_globs_and_missing(tmp_path, folder):
    (folder / "REAL" / "notes.txt").write_text("not an image")
    (folder / "nested" / "deeper").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "nested" / "deeper" / "x.JPG")
    literal = tmp_path / "img[1].png"  # a glob character class if it were taken as a pattern
    Image.new("RGB", (4, 4)).save(literal)
    (tmp_path / "empty").mkdir()

    files, problems = collect_inputs([str(folder), str(folder / "FAKE" / "0 (2).png"), str(literal),
                                      str(tmp_path / "**" / "*(1).png"), str(tmp_path / "missing.png"),
                                      str(tmp_path / "empty"), str(tmp_path / "*.gif")])
    names = [f.name for f in files]
    assert len(files) == 14 and len(set(f.resolve() for f in files)) == 14  # 12 + x.JPG + img[1].png, no duplicates
    assert "notes.txt" not in names and "x.JPG" in names and "img[1].png" in names
    assert [arg for arg, _ in problems] == [str(tmp_path / p) for p in ("missing.png", "empty", "*.gif")]
    assert problems[0][1].startswith("not found") and "no image files" in problems[1][1]
    assert "matches nothing" in problems[2][1]


def test_predict_files_batches_and_keeps_going_past_a_bad_file(tiny_tflite, folder):
    bad = folder / "REAL" / "broken (9).jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    clf = Classifier(tiny_tflite["fp32"], batch_size=5)  # 13 files: three batches, the bad one in the middle one
    results = predict_files(clf, [str(folder)])
    assert len(results) == 13 and all(set(r) == CONTRACT for r in results)
    failed = [r for r in results if r["error"]]
    assert [r["path"] for r in failed] == [str(bad)] and failed[0]["label"] is None and failed[0]["p_fake"] is None
    assert failed[0]["error"] == "not an image file Pillow can read"
    ok = [r for r in results if not r["error"]]
    expected = Classifier(tiny_tflite["fp32"]).predict(np.stack([load_image(r["path"], TINY_SIZE) for r in ok]))
    np.testing.assert_allclose([r["p_fake"] for r in ok], expected, atol=1e-6)
    assert all(r["label"] == ("FAKE" if r["p_fake"] >= 0.5 else "REAL") for r in ok)


def test_json_contract_and_exit_0(cli, tiny_tflite, folder):
    proc, doc = predict_json(cli, folder, "--model", tiny_tflite["fp32"])
    assert proc.returncode == 0, proc.stderr
    assert doc["model"] == str(tiny_tflite["fp32"]) and doc["threshold"] == 0.5
    assert doc["n_images"] == 12 and doc["n_failed"] == 0 and doc["n_fake"] + doc["n_real"] == 12
    assert all(set(r) == CONTRACT for r in doc["results"])
    assert all(r["error"] is None and isinstance(r["p_fake"], float) and 0 <= r["p_fake"] <= 1 for r in doc["results"])
    assert {r["path"] for r in doc["results"]} == {str(p) for p in folder.rglob("*.png")}
    # the tiny model learned the synthetic task: the labels follow the folders
    assert np.mean([r["label"] == truth(r["path"]) for r in doc["results"]]) >= 0.9


def test_threshold_option_overrides_metadata(cli, tiny_tflite, folder):
    proc, doc = predict_json(cli, folder, "--model", tiny_tflite["fp32"], "--threshold", "0")
    assert proc.returncode == 0 and doc["threshold"] == 0.0 and doc["threshold_source"] == "--threshold"
    assert {r["label"] for r in doc["results"]} == {"FAKE"}  # p_fake >= 0 always


def test_bad_file_in_folder_continues_and_exits_1(cli, tiny_tflite, folder):
    (folder / "FAKE" / "oops (1).jpg").write_text("text, not an image")
    proc, doc = predict_json(cli, folder, tmp_missing := folder / "nope.png", "--model", tiny_tflite["fp32"])
    assert proc.returncode == 1
    assert doc["n_failed"] == 2 and doc["n_fake"] + doc["n_real"] == 12
    errors = {r["path"]: r["error"] for r in doc["results"] if r["error"]}
    assert errors == {str(folder / "FAKE" / "oops (1).jpg"): "not an image file Pillow can read",
                      str(tmp_missing): "not found: no such file or folder"}


def test_human_output_table_summary_and_failures(cli, tiny_tflite, folder):
    (folder / "REAL" / "bad.png").write_bytes(b"")
    proc = cli.run("predict", folder, "--model", tiny_tflite["fp32"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    rows = [line.split() for line in lines if line.strip().startswith(str(folder))]
    # one unwrapped row per image (the long tmp paths are not folded when stdout is not a terminal)
    assert len(rows) == 12 and all(r[-2] in ("REAL", "FAKE") and 0 <= float(r[-1]) <= 1 for r in rows)
    n_fake = sum(r[-2] == "FAKE" for r in rows)
    assert lines[-1].startswith(f"{n_fake} FAKE, {12 - n_fake} REAL, 1 failed · model tiny_fp32.tflite")
    assert proc.stderr.splitlines()[-2:] == ["1 failed:", f"  {folder / 'REAL' / 'bad.png'}: empty file (0 bytes)"]


def test_paths_with_spaces_parentheses_and_globs(cli, tiny_tflite, tmp_path):
    root = write_image_folder(tmp_path / "my photos (2024)", n_per_class=3)
    single = root / "REAL" / "0 (1).png"
    pattern = str(root / "**" / "*(2).png")  # the FAKE images, found by a quoted recursive glob
    proc, doc = predict_json(cli, single, pattern, "--model", tiny_tflite["fp32"])
    assert proc.returncode == 0, proc.stderr
    paths = [r["path"] for r in doc["results"]]
    assert paths[0] == str(single) and sorted(paths[1:]) == sorted(str(p) for p in (root / "FAKE").glob("*"))

    proc, doc = predict_json(cli, str(tmp_path / "*.webp"), "--model", tiny_tflite["fp32"])
    assert proc.returncode == 1 and doc["results"][0]["error"].startswith("pattern matches nothing")


def test_int8_io_model(cli, tiny_tflite, folder):
    proc, doc = predict_json(cli, folder, "--model", tiny_tflite["int8"])
    assert proc.returncode == 0, proc.stderr
    assert doc["precision"] == "int8"
    # uint8 output dequantized with the tensor's own scale: probabilities, not raw 0..255 codes
    assert all(0 <= r["p_fake"] <= 1 for r in doc["results"])
    assert np.mean([r["label"] == truth(r["path"]) for r in doc["results"]]) >= 0.9


def test_plot_writes_a_picture(cli, tiny_tflite, folder, tmp_path):
    out = tmp_path / "results.png"
    proc = cli.run("predict", folder, "--model", tiny_tflite["int8"], "--plot", out)
    assert proc.returncode == 0, proc.stderr
    assert f"plot: {out} (12 images)" in proc.stdout.replace("\n", "")
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width >= 400 and img.height >= 300
    assert not list(tmp_path.glob(".results.png.*"))  # the atomic write left no temporary file


def test_plot_to_missing_folder_fails_before_running(cli, tiny_tflite, folder, tmp_path):
    proc = cli.run("predict", folder, "--model", tiny_tflite["fp32"], "--plot", tmp_path / "nope" / "r.png")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --plot ") and "does not exist" in proc.stderr


@pytest.mark.parametrize("args", [[], ["x.png", "--threshold", "1.5"], ["x.png", "--model", "missing.tflite"],
                                  ["x.png", "--frobnicate"], ["x.png", "--threads", "0"]])
def test_usage_errors_exit_2(cli, args):
    proc = cli.run("predict", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Usage:" in proc.stderr


@pytest.mark.parametrize("content, message", [(b"not a model", "not a valid TFLite model"), (None, "not a .tflite")])
def test_corrupt_or_wrong_model_is_one_line(cli, tmp_path, folder, content, message):
    model = tmp_path / ("bad.tflite" if content else "model.keras")
    model.write_bytes(content or b"PK")
    proc = cli.run("predict", folder, "--model", model)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {model}: {message}")


def test_without_model_uses_the_shipped_default_or_says_to_pass_one(cli, folder):
    try:
        default = default_model_path()
    except EdgeDetectError:
        default = None
    proc = cli.run("predict", folder, "--json")
    if default is None:
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.strip().splitlines()[-1] == ("error: no default model is installed with this copy of "
                                                        "edgedetect (models/default.json is missing); pass one "
                                                        "with --model FILE.tflite")
    else:
        photo = default_model_path("photo_model")  # the shipped pair: the 32-px model and the photo model
        assert proc.returncode == 0
        assert json.loads(proc.stdout)["model"] == (str(default) if photo is None else [str(default), str(photo)])


def test_info_prints_tensors_and_quantization(cli, tiny_tflite):
    from edgedetect.interpreter import find_interpreter

    interp = find_interpreter()[0](model_path=str(tiny_tflite["int8"]))
    scale, zero = interp.get_output_details()[0]["quantization"]

    proc = cli.run("info", tiny_tflite["int8"], "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["input"]["dtype"] == "uint8" and doc["input"]["shape"][1:] == [TINY_SIZE, TINY_SIZE, 3]
    assert doc["output"]["quantization"] == {"scale": scale, "zero_point": zero}
    assert doc["size_bytes"] == tiny_tflite["int8"].stat().st_size and doc["metadata"]["precision"] == "int8"

    proc = cli.run("info", tiny_tflite["fp32"])
    assert proc.returncode == 0, proc.stderr
    assert "float32" in proc.stdout and "tiny-test-cnn" in proc.stdout and "preprocessing.resize" in proc.stdout


def test_predict_on_real_cifake_images(cli, tiny_tflite, tmp_path):
    needs_shared_data()
    wanted = {"REAL": 25, "FAKE": 25}
    with tarfile.open(CIFAKE_TEST) as tar:  # stream: stop after 25 of each class
        for member in tar:
            label = member.name.split("/")[-2] if member.isfile() else None
            if wanted.get(label):
                wanted[label] -= 1
                out = tmp_path / "test" / label / member.name.split("/")[-1]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
            if not any(wanted.values()):
                break
    proc, doc = predict_json(cli, tmp_path / "test", "--model", tiny_tflite["int8"])
    assert proc.returncode == 0, proc.stderr
    assert doc["n_images"] == 50 and doc["n_failed"] == 0
    assert all(r["label"] in ("REAL", "FAKE") and 0 <= r["p_fake"] <= 1 for r in doc["results"])
    assert sum(" (" in r["path"] for r in doc["results"]) >= 40  # CIFAKE names such as "0 (10).jpg" went through
