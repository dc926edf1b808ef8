"""Reliability (issue 7): bad and unusual inputs, bad models, bad output paths and Ctrl-C, run as a user runs them.

Every input is written by the tests (no committed binaries) and states what must happen: an unusual but valid
image is classified; a bad one gets one line naming the file and the problem, folder runs go on past it and exit 1;
a bad model, dataset or output path is one ``error:`` line and exit 1; Ctrl-C is one ``interrupted`` line and exit
130. Nothing prints a traceback. docs/reliability.md tabulates these behaviours.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TF_PACKAGES, TINY_SIZE, write_image_folder
from edgedetect.errors import EdgeDetectError

CLASSIFIED = None  # expected outcome of an unusual but valid image


# ------------------------------------------------------------------------------------------------ running the CLI


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def assert_one_error_line(proc: subprocess.CompletedProcess, *pieces) -> None:
    """Exit 1, no traceback, and exactly one ``error:`` line, holding every piece (file name, problem)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    for piece in pieces:
        assert str(piece) in lines[0], (piece, lines[0])


@pytest.fixture(scope="session")
def as_user(tmp_path_factory) -> list[str] | None:
    """A command prefix under which file permissions bind the CLI as they bind a normal user, or None.

    root reads and writes anything (CAP_DAC_OVERRIDE); ``setpriv`` starts the command without those
    capabilities. The probe is a real read of a mode-000 file: where no prefix makes it fail (root without
    setpriv), permission cases expect what that user really gets.
    """
    locked = tmp_path_factory.mktemp("probe") / "locked"
    locked.write_text("secret")
    locked.chmod(0)
    candidates = [[]]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("setpriv"):
        candidates.append([shutil.which("setpriv"), "--bounding-set", "-dac_override,-dac_read_search", "--"])
    for prefix in candidates:
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(locked)!r}).read()"],
                               capture_output=True, text=True)
        if "PermissionError" in probe.stderr:
            return prefix
    return None


# ---------------------------------------------------------------------------------------------- the image corpus


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 20000) -> bytes:
    """A real all-black 1-bit side x side PNG: 4e8 pixels decoded (GBs as RGB), about 60 kB on disk."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row * 1000) for _ in range(side // 1000)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with the size in its baseline start-of-frame header replaced."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[: i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9 :]


def image_corpus() -> dict[str, tuple[bytes, str | None]]:
    """``{file name: (bytes, None if it must be classified, else a piece of the one-line problem)}``."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 20, 3), np.uint8))  # not square: the crop is exercised
    plain = encode(rgb, "JPEG", quality=90)  # baseline, no EXIF: the fast JPEG path
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8))
    png, noisy_jpeg = encode(noise, "PNG"), encode(noise, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to show
    frames = [Image.new("P", (12, 10), i * 60) for i in range(3)]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    zero_width = bytearray(png)  # IHDR width 0, with a correct CRC
    zero_width[16:20] = bytes(4)
    zero_width[29:33] = struct.pack(">I", zlib.crc32(bytes(zero_width[12:29])))
    bad_crc = bytearray(png)
    bad_crc[60] ^= 0xFF  # inside the compressed pixels
    header = "starts like a {} file but its header is truncated or corrupt"
    return {
        "empty.jpg": (b"", "empty file (0 bytes)"),
        "truncated.jpg": (noisy_jpeg[: len(noisy_jpeg) // 2], "cannot decode image (truncated image data)"),
        "cut_in_header.jpg": (plain[: len(plain) // 2], header.format("JPEG")),
        "truncated.png": (png[: len(png) // 2], "cannot decode image (truncated image data)"),
        "text.jpg": (b"just some text, no picture here\n", "not an image file Pillow can read"),
        "page.png": (b"<!doctype html><html><body>hello</body></html>\n", "not an image file Pillow can read"),
        "zeros.jpeg": (bytes(4096), "not an image file Pillow can read"),
        "bomb.png": (bomb_png(), "image too large, refused as a possible decompression bomb"),
        "bomb_header.jpg": (with_jpeg_size(plain, 30000, 30000), "image too large, refused"),
        "zero_width.png": (bytes(zero_width), header.format("PNG")),
        "bad_crc.png": (bytes(bad_crc), "cannot decode image"),
        "header_only.gif": (b"GIF89a\x10\x00\x10\x00", header.format("GIF")),
        "truncated.webp": (encode(rgb, "WEBP")[:40], "cannot decode image"),
        "plain.jpg": (plain, CLASSIFIED),
        "progressive.jpg": (encode(rgb, "JPEG", progressive=True), CLASSIFIED),
        "one_pixel.png": (encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), CLASSIFIED),
        "sliver_1x300.png": (encode(Image.new("RGB", (1, 300), (10, 10, 200)), "PNG"), CLASSIFIED),
        "gray.png": (encode(rgb.convert("L"), "PNG"), CLASSIFIED),
        "gray.jpg": (encode(rgb.convert("L"), "JPEG"), CLASSIFIED),
        "bilevel.png": (encode(rgb.convert("1"), "PNG"), CLASSIFIED),
        "palette.png": (encode(rgb.convert("P"), "PNG"), CLASSIFIED),
        "palette_transparent.png": (encode(rgb.convert("P"), "PNG", transparency=0), CLASSIFIED),
        "rgba.png": (encode(rgb.convert("RGBA"), "PNG"), CLASSIFIED),
        "gray_alpha.png": (encode(rgb.convert("LA"), "PNG"), CLASSIFIED),
        "cmyk.jpg": (encode(rgb.convert("CMYK"), "JPEG"), CLASSIFIED),
        "deep16.png": (encode(Image.fromarray(rng.integers(0, 65536, (20, 24), np.uint16)), "PNG"), CLASSIFIED),
        "float32.tiff": (encode(Image.fromarray(rng.random((20, 24), np.float32)), "TIFF"), CLASSIFIED),
        "exif_rotated.jpg": (encode(rgb, "JPEG", exif=exif), CLASSIFIED),
        "corrupt_exif.jpg": (encode(rgb, "JPEG", exif=b"Exif\0\0MM\0*\0\0\0\x08\0\x05garbage"), CLASSIFIED),
        "animated.gif": (gif, CLASSIFIED),
        "lossy.webp": (encode(rgb, "WEBP", quality=80), CLASSIFIED),
        "lossless_alpha.webp": (encode(rgb.convert("RGBA"), "WEBP", lossless=True), CLASSIFIED),
        "image.bmp": (encode(rgb, "BMP"), CLASSIFIED),
        "lzw.tiff": (encode(rgb, "TIFF", compression="tiff_lzw"), CLASSIFIED),
        "jpeg_named.png": (plain, CLASSIFIED),  # the content decides, not the suffix
        "UPPER CASE.JPG": (plain, CLASSIFIED),
        "space and (parens) [1].jpg": (plain, CLASSIFIED),
    }


NON_UTF8 = b"caf\xe9.jpg"  # Latin-1 "café": not valid UTF-8
SPECIAL = ["caf\\xe9.jpg (non-UTF-8 name)", "broken_link.jpg", "unreadable.jpg", "pipe.jpg"]
CASES = [*image_corpus(), *SPECIAL]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, as_user) -> tuple[Path, dict[str, tuple[str, str | None]]]:
    """The corpus folder and ``{case: (path as the CLI names it, expected problem or None)}``."""
    root = tmp_path_factory.mktemp("corpus")
    cases = {}
    for name, (data, problem) in image_corpus().items():
        (root / name).write_bytes(data)
        cases[name] = (str(root / name), problem)
    plain = (root / "plain.jpg").read_bytes()
    try:
        raw = os.path.join(os.fsencode(root), NON_UTF8)
        with open(raw, "wb") as f:
            f.write(plain)
        cases[SPECIAL[0]] = (os.fsdecode(raw), CLASSIFIED)
    except (OSError, UnicodeError):  # file systems that only take UTF-8 names (APFS) refuse it: nothing to test
        pass
    (root / "broken_link.jpg").symlink_to(root / "deleted.jpg")
    cases["broken_link.jpg"] = (str(root / "broken_link.jpg"), "broken symlink")
    locked = root / "unreadable.jpg"
    locked.write_bytes(plain)
    locked.chmod(0)
    cases["unreadable.jpg"] = (str(locked), "permission denied" if as_user is not None else CLASSIFIED)
    if hasattr(os, "mkfifo"):  # reading a named pipe would wait forever for a writer
        os.mkfifo(root / "pipe.jpg")
        cases["pipe.jpg"] = (str(root / "pipe.jpg"), "not a regular file")
    (root / "folder.jpg").mkdir()  # a directory named like an image
    return root, cases


@pytest.fixture(scope="session")
def predicted(cli, corpus, tiny_tflite, as_user):
    """One ``predict --json`` run over the whole corpus folder (and the folder named folder.jpg given directly)."""
    root, _ = corpus
    proc = cli.run("predict", root, root / "folder.jpg", "--model", tiny_tflite["fp32"], "--json", prefix=as_user or ())
    return proc, json.loads(proc.stdout)  # stdout is exactly one JSON document


def test_corpus_covers_enough_bad_and_unusual_inputs(corpus):
    _, cases = corpus
    bad = [c for c, (_, problem) in cases.items() if problem]
    assert len(cases) >= 25 and len(bad) >= 12 and len(cases) - len(bad) >= 20


@pytest.mark.parametrize("case", CASES)
def test_predict_classifies_the_unusual_and_names_the_problem_of_the_bad(case, corpus, predicted):
    _, cases = corpus
    if case not in cases:
        pytest.skip("not possible on this system (non-UTF-8 file names, named pipes)")
    path, problem = cases[case]
    _, doc = predicted
    [result] = [r for r in doc["results"] if r["path"] == path]
    if problem is None:
        assert result["error"] is None, result
        assert result["label"] in ("REAL", "FAKE") and 0.0 <= result["p_fake"] <= 1.0
    else:
        assert result["label"] is None and result["p_fake"] is None
        assert problem in result["error"] and "\n" not in result["error"], result


def test_predict_folder_run_goes_on_reports_every_failure_and_exits_1(corpus, predicted):
    root, cases = corpus
    proc, doc = predicted
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    bad = {path for path, problem in cases.values() if problem}
    assert [r["path"] for r in doc["results"][:-1]] == sorted(path for path, _ in cases.values())
    # the folder named like an image is searched as a folder: an argument that yields nothing, listed last
    last = doc["results"][-1]
    assert (last["path"], last["label"], last["p_fake"]) == (str(root / "folder.jpg"), None, None)
    assert last["error"].startswith("folder holds no image files")
    assert doc["n_images"] == len(cases) + 1 and doc["n_failed"] == len(bad) + 1
    assert doc["n_fake"] + doc["n_real"] == len(cases) - len(bad)
    assert {r["path"] for r in doc["results"] if r["error"]} == bad | {str(root / "folder.jpg")}


def test_predict_human_output_lists_failures_at_the_end_on_a_strict_utf8_terminal(cli, corpus, tiny_tflite, as_user,
                                                                                 tmp_path):
    root, cases = corpus
    plot = tmp_path / "corpus.png"
    # PYTHONIOENCODING=utf-8:strict is what a UTF-8 desktop locale gives; a non-UTF-8 name must not crash it.
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    proc = cli.run("predict", root, "--model", tiny_tflite["fp32"], "--plot", plot, prefix=as_user or (), env=env,
                   encoding=None, errors=None)  # bytes, decoded strictly below
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # strict: the output is valid UTF-8
    assert proc.returncode == 1 and "Traceback" not in err, err
    bad = {path: problem for path, problem in cases.values() if problem}
    lines = err.splitlines()
    listed = lines[lines.index(f"{len(bad)} failed:") + 1 :]
    assert len(listed) == len(bad)  # one line per bad file, at the end
    for path, problem in bad.items():
        [line] = [line for line in listed if line.startswith(f"  {path}: ")]
        assert problem in line
    n_ok = len(cases) - len(bad)
    assert f"REAL, {len(bad)} failed · model tiny_fp32.tflite" in out
    rows = out.splitlines()
    for path, problem in cases.values():
        if problem is None and path.isascii():  # one table row per classified image
            [row] = [r for r in rows if f" {path} " in r]
            assert " FAKE " in row or " REAL " in row
    if SPECIAL[0] in cases:
        [row] = [r for r in rows if "caf\\udce9.jpg" in r]  # the undecodable byte shown escaped, not a crash
        assert " FAKE " in row or " REAL " in row
    assert f"plot: {plot} ({n_ok} images)" in out
    with Image.open(plot) as img:
        assert img.format == "PNG"


def test_bench_goes_on_past_bad_files_and_lists_them(cli, corpus, tiny_tflite, as_user):
    root, cases = corpus
    proc = cli.run("bench", tiny_tflite["fp32"], "--data", root, "--json", "--runs", "3", "--warmup", "1",
               "--workers", "1", prefix=as_user or ())
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    bad = {os.path.relpath(path, root): problem for path, problem in cases.values() if problem}
    bad.pop("pipe.jpg", None)  # bench lists regular files and symlinks only: a pipe is not an image to measure
    reported = {e["path"]: e["error"] for e in doc["errors"]}
    assert set(reported) == set(bad)
    assert all(bad[p] in reported[p] for p in bad)
    assert doc["n_images"] == doc["rows"][0]["n_images"] == sum(problem is None for _, problem in cases.values())
    lines = proc.stderr.splitlines()
    for rel, problem in bad.items():  # one line per file, however long, then the count
        [line] = [line for line in lines if line.startswith(f"error: {rel}: ")]
        assert problem in line
    assert lines[-1] == f"{len(bad)} file(s) could not be read and were left out"


# -------------------------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="session")
def datasets(tmp_path_factory, corpus) -> dict[str, Path]:
    """An empty folder, a one-class dataset, and a test split holding five bad files beside 12 good ones."""
    base = tmp_path_factory.mktemp("datasets")
    (base / "empty").mkdir()
    one = write_image_folder(base / "one_class", n_per_class=4)
    shutil.rmtree(one / "FAKE")
    mixed = write_image_folder(base / "with_bad_files", n_per_class=6, split="test")
    root, _ = corpus
    for name, folder in (("empty.jpg", "REAL"), ("text.jpg", "REAL"), ("truncated.png", "FAKE"), ("bomb.png", "FAKE")):
        shutil.copy(root / name, mixed / "test" / folder / name)
    (mixed / "test" / "FAKE" / "broken_link.jpg").symlink_to(root / "deleted.jpg")
    return {"empty": base / "empty", "one_class": one, "with_bad_files": mixed}


BAD_IN_DATASET = ["test/REAL/empty.jpg", "test/REAL/text.jpg", "test/FAKE/truncated.png", "test/FAKE/bomb.png",
                  "test/FAKE/broken_link.jpg"]


@pytest.mark.parametrize("command, data, code, problem", [
    ("predict", "empty", 1, "folder holds no image files"),
    ("predict", "one_class", 0, None),
    ("evaluate", "empty", 1, "no image files found"),
    ("evaluate", "one_class", 1, "has only one class"),
    ("bench", "empty", 1, "no image files in it"),
    ("bench", "one_class", 0, None),
])
def test_empty_and_one_class_datasets(cli, command, data, code, problem, datasets, tiny_tflite):
    model, folder = tiny_tflite["fp32"], datasets[data]
    args = {"predict": ["predict", folder, "--model", model, "--json"],
            "evaluate": ["evaluate", model, "--data", folder, "--json"],
            "bench": ["bench", model, "--data", folder, "--json", "--runs", "3", "--workers", "1"]}[command]
    proc = cli.run(*args)
    assert "Traceback" not in proc.stderr and proc.returncode == code, proc.stderr
    if command == "predict" and problem:
        [result] = json.loads(proc.stdout)["results"]  # predict reports it as a failed result, not a crash
        assert result["path"] == str(folder) and result["error"].startswith(problem)
    elif problem:
        assert_one_error_line(proc, folder, problem)
    elif command == "bench":
        row = json.loads(proc.stdout)["rows"][0]
        assert row["accuracy"] is not None and row["roc_auc"] is None  # no ROC with one class
    else:
        assert {r["label"] for r in json.loads(proc.stdout)["results"]} <= {"REAL", "FAKE"}


def test_evaluate_scores_the_readable_images_of_a_split_with_bad_files(cli, datasets, tiny_tflite):
    proc = cli.run("evaluate", tiny_tflite["fp32"], "--data", datasets["with_bad_files"], "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 12 and sum(map(sum, report["confusion_matrix"])) == 12


def test_evaluate_lists_the_bad_files_and_exits_1(cli, datasets, tiny_tflite):
    data = datasets["with_bad_files"]
    runs = cli.many({"json": ["evaluate", tiny_tflite["fp32"], "--data", data, "--json"],
                     "human": ["evaluate", tiny_tflite["fp32"], "--data", data]})
    for proc in runs.values():
        assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr
    shown = runs["human"].stdout + runs["human"].stderr
    assert all(name in runs["json"].stdout and name in shown for name in BAD_IN_DATASET)


def test_evaluate_plots_a_mistake_with_a_non_utf8_file_name(cli, tiny_tflite, tmp_path):
    data = write_image_folder(tmp_path / "data", n_per_class=2, split="test")
    try:
        os.rename(data / "test" / "REAL" / "0 (1).png", os.path.join(os.fsencode(data / "test" / "REAL"), NON_UTF8))
    except OSError:
        pytest.skip("this file system does not take non-UTF-8 file names")
    # threshold 0 calls everything FAKE: every REAL image, the renamed one too, is a mistake to draw
    proc = cli.run("evaluate", tiny_tflite["fp32"], "--data", data, "--threshold", "0", "--plots", tmp_path / "plots")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "plots" / "worst_mistakes.png").is_file()


# ------------------------------------------------------------------------------------------------------ models


@pytest.fixture(scope="session")
def bad_models(tiny_tflite, tmp_path_factory) -> dict[str, tuple[Path, Path, str]]:
    """``{case: (model file, the file its one error line names, the problem it states)}``."""
    tf = pytest.importorskip("tensorflow")
    import keras

    from edgedetect.metadata import ModelMetadata, write_metadata

    out = tmp_path_factory.mktemp("bad_models")
    good = tiny_tflite["fp32"].read_bytes()
    invalid = "not a valid TFLite model"
    models = {}

    def add(name: str, data: bytes, problem: str) -> Path:
        (out / name).write_bytes(data)
        models[name] = (out / name, out / name, problem)
        return out / name

    add("empty.tflite", b"", invalid)
    add("random_bytes.tflite", np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes(), invalid)
    add("truncated.tflite", good[: len(good) // 2], invalid)
    # Passes the flatbuffer check; its input tensor's name is no longer UTF-8.
    assert good.count(b"serving_default_image:0") == 1
    add("damaged_name.tflite", good.replace(b"serving_default_image:0", b"serving_default_im\xb1ge:0"), invalid)

    def keras_model(inputs, outputs):
        return tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert()

    layers = keras.layers
    x = keras.Input((8,))
    add("vector_input.tflite", keras_model(x, layers.Dense(1, activation="sigmoid")(x)),
        "not an image classifier: input shape [1, 8]")
    x = keras.Input((16, 16, 1))
    add("gray_input.tflite", keras_model(x, layers.Dense(1)(layers.Flatten()(x))),
        "not an image classifier: input shape [1, 16, 16, 1]")
    x = keras.Input((16, 16, 3))
    pooled = layers.GlobalAveragePooling2D()(x)
    add("two_outputs.tflite", keras_model(x, [layers.Dense(1)(pooled), layers.Dense(1)(pooled)]),
        "it has 1 inputs and 2 outputs")
    add("ten_classes.tflite", keras_model(x, layers.Dense(10)(pooled)), "not a binary detector: output shape [1, 10]")
    sidecar = add("broken_sidecar.tflite", good, "not valid model metadata")
    sidecar.with_suffix(".json").write_text("{not json")
    models["broken_sidecar.tflite"] = (sidecar, sidecar.with_suffix(".json"), "not valid model metadata")
    other = add("other_sidecar.tflite", good, "metadata says input size 32")
    write_metadata(other, ModelMetadata(input_size=32, precision="fp32"))
    shutil.copy(tiny_tflite["fp32"], out / "model.keras")
    models["model.keras"] = (out / "model.keras", out / "model.keras", "not a .tflite model")
    return models


BAD_MODELS = ["empty.tflite", "random_bytes.tflite", "truncated.tflite", "damaged_name.tflite", "vector_input.tflite",
              "gray_input.tflite", "two_outputs.tflite", "ten_classes.tflite", "broken_sidecar.tflite",
              "other_sidecar.tflite", "model.keras"]


@pytest.fixture(scope="session")
def bad_model_runs(cli, bad_models, corpus, datasets) -> dict:
    root, _ = corpus
    runs = {(name, "predict"): ["predict", root / "plain.jpg", "--model", path]
            for name, (path, _, _) in bad_models.items()}
    for name in ("random_bytes.tflite", "gray_input.tflite"):  # the same check in every command; two suffice
        path = bad_models[name][0]
        runs[(name, "evaluate")] = ["evaluate", path, "--data", datasets["one_class"]]
        runs[(name, "bench")] = ["bench", path, "--runs", "3"]
        runs[(name, "info")] = ["info", path]
    return cli.many(runs)


def test_bad_models_cover_the_list(bad_models):
    assert sorted(bad_models) == sorted(BAD_MODELS)


@pytest.mark.slow  # its fixture runs every command on every bad model (14 s)
@pytest.mark.parametrize("name", BAD_MODELS)
def test_a_bad_model_is_one_error_line_for_every_command(name, bad_models, bad_model_runs):
    _, named, problem = bad_models[name]
    runs = {command: proc for (model, command), proc in bad_model_runs.items() if model == name}
    assert "predict" in runs
    for proc in runs.values():
        assert_one_error_line(proc, named, problem)


def test_a_model_without_metadata_runs_with_one_warning_line(cli, tiny_tflite, corpus, tmp_path):
    bare = tmp_path / "bare.tflite"
    shutil.copy(tiny_tflite["fp32"], bare)  # without bare.json beside it
    proc = cli.run("predict", corpus[0] / "plain.jpg", "--model", bare, "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert str(bare) in warning and "no metadata file" in warning and "threshold 0.5" in warning
    assert json.loads(proc.stdout)["results"][0]["label"] in ("REAL", "FAKE")


def test_a_folder_named_like_a_model_is_a_usage_error(cli, tmp_path, corpus):
    (tmp_path / "model.tflite").mkdir()
    proc = cli.run("predict", corpus[0] / "plain.jpg", "--model", tmp_path / "model.tflite")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "is a directory" in proc.stderr


@pytest.fixture(scope="session")
def lambda_keras(tmp_path_factory) -> Path:
    """A .keras model from an untrusted place: its Lambda layer would run arbitrary Python when loaded."""
    keras = pytest.importorskip("keras")

    x = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    h = keras.layers.Lambda(lambda t: t / 255.0)(x)
    y = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(h))
    path = tmp_path_factory.mktemp("untrusted") / "downloaded.keras"
    keras.Model(x, y).save(path)
    return path


def test_untrusted_keras_is_refused_by_convert_and_evaluate_in_one_line(cli, lambda_keras, datasets, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "downloaded_fp32.tflite"
    existing.write_bytes(b"the model that was here before")
    proc = cli.run("convert", lambda_keras, "--quant", "fp32", "--out", out, "--force")
    assert_one_error_line(proc, lambda_keras, "cannot load", "Lambda", "safe_mode")
    # refused even with --force: the file already there is untouched and no temporary file is left behind
    assert sorted(out.iterdir()) == [existing] and existing.read_bytes() == b"the model that was here before"
    # evaluate in-process (a second TensorFlow start-up would double the test's time); the CLI prints this error
    # as its one line, as it did for convert
    result = cli.invoke("evaluate", lambda_keras, "--data", datasets["with_bad_files"])
    message = str(result.exception)
    assert isinstance(result.exception, EdgeDetectError) and "\n" not in message, result.output
    assert all(piece in message for piece in (str(lambda_keras), "cannot load", "Lambda", "safe_mode"))


def test_failed_conversion_keeps_the_existing_file_and_leaves_no_temp_files(tiny_keras_model, tmp_path):
    pytest.importorskip("tensorflow")
    from conversion.convert import ConversionConfig, convert

    out = tmp_path / "out"
    out.mkdir()
    existing = out / "tiny_int8.tflite"
    existing.write_bytes(b"the model that was here before")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        (calib / f"{i}.jpg").write_text("not an image")
    with pytest.raises(EdgeDetectError, match="none of the sampled images could be read"):
        convert(tiny_keras_model, ConversionConfig.for_int8(str(calib), out=str(out), force=True), log=lambda _: None)
    assert sorted(out.iterdir()) == [existing] and existing.read_bytes() == b"the model that was here before"


# ------------------------------------------------------------------------------------------------ output paths


def test_output_paths_missing_read_only_or_existing(cli, tiny_tflite, tiny_keras_model, corpus, datasets, as_user,
                                                   tmp_path):
    image, model, data = corpus[0] / "plain.jpg", tiny_tflite["fp32"], datasets["one_class"]
    missing = tmp_path / "missing"
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    old = {}
    for name in ("old.png", "old.csv", "old_fp32.tflite"):
        (tmp_path / name).write_bytes(b"made before: " + name.encode())
        old[name] = tmp_path / name
    predict = ["predict", image, "--model", model]
    bench = ["bench", model, "--data", data, "--runs", "3", "--workers", "1"]
    convert = ["convert", tiny_keras_model, "--quant", "fp32"]
    refused = {  # run, the path named in its one error line, the problem
        "predict --plot missing": ([*predict, "--plot", missing / "p.png"], missing, "does not exist"),
        "predict --plot existing": ([*predict, "--plot", old["old.png"]], old["old.png"],
                                    "already exists; pass --force"),
        "bench --csv missing": ([*bench, "--csv", missing / "b.csv"], missing, "does not exist"),
        "bench --csv existing": ([*bench, "--csv", old["old.csv"]], old["old.csv"], "already exists; pass --force"),
        "bench --plot missing": ([*bench, "--plot", missing / "b.png"], missing, "does not exist"),
        "bench --plot existing": ([*bench, "--plot", old["old.png"]], old["old.png"], "already exists; pass --force"),
        "convert --out missing": ([*convert, "--out", missing / "m.tflite"], missing, "does not exist"),
        "convert --out existing": ([*convert, "--out", old["old_fp32.tflite"]], old["old_fp32.tflite"],
                                   "already exists; pass --force"),
    }
    if as_user is not None:  # permissions bind the CLI: a read-only folder is refused before any work
        refused.update({
            "predict --plot read-only": ([*predict, "--plot", read_only / "p.png"], read_only, "is not writable"),
            "bench --csv read-only": ([*bench, "--csv", read_only / "b.csv"], read_only, "is not writable"),
            "bench --plot read-only": ([*bench, "--plot", read_only / "b.png"], read_only, "is not writable"),
            "convert --out read-only": ([*convert, "--out", read_only], read_only, "is not writable"),
        })
    runs = cli.many({key: args for key, (args, _, _) in refused.items()}, prefix=as_user or ())
    for key, (_, named, problem) in refused.items():
        assert_one_error_line(runs[key], named, problem)
    assert not missing.exists() and not any(read_only.iterdir())
    assert all(path.read_bytes() == b"made before: " + name.encode() for name, path in old.items())

    forced = cli.many({"predict": [*predict, "--plot", old["old.png"], "--force"],
                       "bench": [*bench, "--csv", old["old.csv"], "--force"]})
    assert all(p.returncode == 0 for p in forced.values()), [p.stderr for p in forced.values()]
    assert old["old.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and old["old.csv"].read_text().startswith("model,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv", "old.png", "old_fp32.tflite", "read_only"]


# ------------------------------------------------------------------------------------------------------ Ctrl-C


@pytest.fixture(scope="session")
def big_folder(tmp_path_factory) -> Path:
    """3000 images in REAL/FAKE that take seconds to decode: one noisy 384x384 PNG, linked 3000 times."""
    root = tmp_path_factory.mktemp("big")
    source = root / "source.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (384, 384, 3), np.uint8)).save(source)
    for label in ("REAL", "FAKE"):
        (root / "data" / label).mkdir(parents=True)
        for i in range(1500):
            target = root / "data" / label / f"{i}.png"
            try:
                os.link(source, target)
            except OSError:  # no hard links here
                target.symlink_to(source)
    return root / "data"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def interrupt(cli, args: list, ready, settle: float, wait: float = 120) -> tuple[int, str]:
    """Run the CLI and press Ctrl-C (SIGINT to its process group, as a terminal does) ``settle`` seconds after
    ``ready(stderr line)`` is true (or after ``wait`` seconds without such a line). ``ready`` may instead be a
    number: ready once the process has used that many seconds of CPU (a successful predict prints nothing on stderr, and reads a model's bytes rather than mapping it).

    Returns ``(exit code, all of stderr)``; fails when the command ends before it could be interrupted.
    """
    proc = cli.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [*map(lines.put, proc.stderr), lines.put(None)], daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + wait
        while True:
            if isinstance(ready, float) and cpu_seconds(proc.pid) >= ready:
                break
            step = 0.02 if isinstance(ready, float) else None
            try:
                line = lines.get(timeout=max(0.0, min(deadline - time.monotonic(), step or wait)))
            except queue.Empty:
                if time.monotonic() < deadline:
                    continue
                break  # no sign of progress: press Ctrl-C anyway
            assert line is not None, f"it ended before Ctrl-C (exit {proc.wait()}): {''.join(seen)}"
            seen.append(line)
            if callable(ready) and ready(line):
                break
        time.sleep(settle)
        assert proc.poll() is None, f"it ended before Ctrl-C (exit {proc.returncode}): {''.join(seen)}"
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # every process of the group (bench workers too) is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("processes of the interrupted command are still running")
    while (line := lines.get(timeout=30)) is not None:
        seen.append(line)
    return proc.returncode, "".join(seen)


def assert_interrupted(code: int, stderr: str) -> None:
    assert code == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert sum("interrupted" in line for line in lines) == 1 and lines[-1].endswith("interrupted"), stderr


@pytest.mark.parametrize("command", ["predict", "bench"])
def test_ctrl_c_during_predict_and_bench(cli, command, big_folder, tiny_tflite):
    model = tiny_tflite["fp32"]
    if command == "predict":
        args = ["predict", big_folder, "--model", model, "--json"]
        settle = 0.2
        ready = 1.5  # CPU seconds: past the imports and the model check, into decoding 3000 images (several s)
    else:
        args = ["bench", model, "--data", big_folder, "--workers", "2", "--runs", "20"]
        settle = 1.5  # past the latency runs, into the worker processes' pass
        ready = lambda line: line.startswith("data:")  # noqa: E731
    code, stderr = interrupt(cli, args, ready=ready, settle=settle, wait=10 if command == "predict" else 120)
    assert_interrupted(code, stderr)


@pytest.mark.slow  # it trains until the Ctrl-C (9 s)
def test_ctrl_c_during_training(cli, tmp_path):
    pytest.importorskip("tensorflow")
    data = write_image_folder(tmp_path / "data", n_per_class=8)
    run = tmp_path / "run"
    code, stderr = interrupt(cli, ["train", "--arch", "cnn", "--data", data, "--img-size", TINY_SIZE, "--epochs", 1000,
                              "--patience", 1000, "--batch-size", 8, "--out", run],
                             ready=lambda line: line.startswith("epoch "), settle=0.2)
    assert_interrupted(code, stderr)
    # the finished epoch's checkpoint is whole and no half-written one is left, wherever Ctrl-C landed
    assert (run / "last.keras").is_file() and (run / "state.json").is_file()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


# =========================================================================== round 2: hostile files (issue 15)
# Each test below builds a class of hostile input at test time and holds every command to docs/reliability.md:
# one line naming the file and the problem, the rest of the run goes on, exit 1 where something failed, no
# traceback, no crash (exit 134/139), no hang, nothing half-written, never a silent wrong answer.

SHIPPED = REPO / "models"


def shipped_copy(folder: Path, name: str = "cnn32_int8") -> Path:
    """A copy of a shipped model and its sidecar in ``folder`` (to damage or to pair with a bad sidecar)."""
    shutil.copy(SHIPPED / f"{name}.tflite", folder / f"{name}.tflite")
    shutil.copy(SHIPPED / f"{name}.json", folder / f"{name}.json")
    return folder / f"{name}.tflite"


def assert_no_crash(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr


def eps_bytes() -> bytes:
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
            b"newpath 0 0 moveto 10 10 lineto stroke showpage\n%%EOF\n")


@pytest.fixture(scope="session")
def hostile_folder(tmp_path_factory) -> Path:
    """REAL/FAKE folders with good images beside PostScript named .jpg, a 30 GB sparse .jpg, a NaN TIFF, an ICO named
    .png, and file names holding a newline and a terminal escape sequence."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(3)
    for label in ("REAL", "FAKE"):
        (root / label).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(root / label / f"ok{i}.png")
    (root / "REAL" / "photo.jpg").write_bytes(eps_bytes())
    with open(root / "FAKE" / "huge.jpg", "wb") as f:  # sparse: 30 GB long, no disk used
        f.truncate(30 * 2**30)
    Image.fromarray(np.full((16, 16), np.nan, np.float32)).save(root / "REAL" / "nan.tiff")
    Image.new("RGB", (16, 16)).save(root / "FAKE" / "icon.png", "ICO")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "REAL" / "new\nline.png")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "REAL" / "esc\x1b[31mred.png")
    return root


HOSTILE_BAD = {"REAL/photo.jpg": "not a supported image (PostScript); supported: JPEG, PNG",
               "FAKE/huge.jpg": "file too large (30.0 GiB",
               "FAKE/icon.png": "not a supported image (ICO)"}
HOSTILE_GOOD = 9  # 6 plain images, the NaN TIFF and the two odd names


def test_hostile_images_in_predict_bench_and_inspect(cli, hostile_folder):
    runs = cli.many({"predict": ["predict", hostile_folder, "--json"],
                     "human": ["predict", hostile_folder],
                     "bench": ["bench", SHIPPED / "cnn32_int8.tflite", "--data", hostile_folder, "--json", "--runs",
                               "2", "--warmup", "0", "--workers", "2"],
                     "inspect": ["data", "inspect", hostile_folder, "--json", "--no-progress"]})
    for proc in runs.values():
        assert "Traceback" not in proc.stderr and "RuntimeWarning" not in proc.stderr, proc.stderr
        assert "\x1b" not in proc.stdout + proc.stderr  # the escape sequence in a file name never reaches a terminal
    assert runs["predict"].returncode == 1
    results = {os.path.relpath(r["path"], hostile_folder): r for r in json.loads(runs["predict"].stdout)["results"]}
    for rel, problem in HOSTILE_BAD.items():
        assert problem in results[rel]["error"] and results[rel]["p_fake"] is None, results[rel]
    assert sum(r["error"] is None and 0.0 <= r["p_fake"] <= 1.0 for r in results.values()) == HOSTILE_GOOD
    # one line per failed file and per table row, whatever the names hold
    human = runs["human"]
    assert sum(line.startswith("  ") for line in human.stderr.splitlines()) == len(HOSTILE_BAD)
    assert "new\\nline.png" in human.stdout and "esc\\x1b[31mred.png" in human.stdout
    doc = json.loads(runs["bench"].stdout)
    assert runs["bench"].returncode == 1 and doc["n_images"] == HOSTILE_GOOD
    errors = {e["path"]: e["error"] for e in doc["errors"]}
    assert set(errors) == set(HOSTILE_BAD) and all(HOSTILE_BAD[p] in errors[p] for p in errors)
    report = json.loads(runs["inspect"].stdout)
    unreadable = {u["path"]: u["problem"] for u in report["unreadable"]}
    assert set(unreadable) == set(HOSTILE_BAD) and all(HOSTILE_BAD[p] in unreadable[p] for p in unreadable)


def test_postscript_never_reaches_ghostscript(cli, hostile_folder, tmp_path):
    """A fake ``gs`` first on PATH records any call: Pillow would run it to decode the EPS named photo.jpg."""
    spy = tmp_path / "bin"
    spy.mkdir()
    called = tmp_path / "gs-was-called"
    (spy / "gs").write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    (spy / "gs").chmod(0o755)
    env = {**os.environ, "PATH": f"{spy}{os.pathsep}{os.environ['PATH']}"}
    for args in (["predict", hostile_folder / "REAL" / "photo.jpg"],
                 ["bench", SHIPPED / "cnn32_int8.tflite", "--data", hostile_folder, "--runs", "2", "--workers", "2"]):
        proc = cli.run(*args, env=env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "not a supported image (PostScript)" in proc.stderr
    assert not called.exists()


def test_sixteen_bit_images_convert_in_bounded_memory():
    import tracemalloc

    from edgedetect.preprocess import _to_rgb

    deep = Image.fromarray(np.random.default_rng(0).integers(0, 65536, (2000, 2000), np.uint16))
    tracemalloc.start()
    rgb = _to_rgb(deep)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rgb.mode == "RGB" and rgb.size == (2000, 2000)
    assert peak < 40e6, f"{peak / 1e6:.0f} MB for a 4-megapixel 16-bit image"  # float64 copies would take 96 MB+


# ------------------------------------------------------------------------------------------- listing folders


@pytest.fixture(scope="session")
def looped_folder(tmp_path_factory, as_user) -> tuple[Path, int]:
    """REAL/FAKE images with symlink loops (a link to the root, to a parent, to itself), a symlinked folder of
    images outside the tree, and (when permissions bind) an unreadable sub-folder; returns (root, images)."""
    base = tmp_path_factory.mktemp("looped")
    root = base / "data"
    outside = base / "outside" / "REAL"
    outside.mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside / "linked.jpg")
    for label in ("REAL", "FAKE"):
        (root / label / "deeper").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i, 50, 90)).save(root / label / f"{i}.jpg")
        Image.new("RGB", (8, 8), (7, 7, 7)).save(root / label / "deeper" / "d.jpg")
        (root / label / "deeper" / "up").symlink_to("..")
        (root / label / "to_root").symlink_to(root)
    (root / "loop").symlink_to("loop")  # a link to itself: never a folder
    (root / "REAL" / "more").symlink_to(outside)
    locked = root / "FAKE" / "locked"
    locked.mkdir()
    Image.new("RGB", (8, 8)).save(locked / "hidden.jpg")
    locked.chmod(0)
    return root, 7


def test_symlink_loops_end_and_every_image_is_listed_once(cli, looped_folder, as_user):
    root, n = looped_folder
    pattern = f"{root}/**/*.jpg"
    runs = cli.many({"folder": ["predict", root, "--json"], "glob": ["predict", pattern, "--json"],
                     "bench": ["bench", SHIPPED / "cnn32_int8.tflite", "--data", root, "--json", "--runs", "2",
                               "--warmup", "0", "--workers", "1"],
                     "inspect": ["data", "inspect", root, "--json", "--no-progress"]}, prefix=as_user or ())
    locked = as_user is not None  # permissions bind: the locked folder is reported in every command, the rest runs
    for key in ("folder", "glob"):
        proc = runs[key]
        assert "Traceback" not in proc.stderr and proc.returncode == (1 if locked else 0), proc.stderr
        results = json.loads(proc.stdout)["results"]
        classified = [r["path"] for r in results if r["error"] is None]
        real = [os.path.realpath(p) for p in classified]
        assert len(classified) == n + (not locked) and len(set(real)) == len(real), classified
        if locked:
            [bad] = [r for r in results if r["error"]]
            assert bad["path"].endswith("locked") and "permission denied" in bad["error"]
    bench = json.loads(runs["bench"].stdout)
    assert bench["n_images"] == n + (not locked)
    inspect = json.loads(runs["inspect"].stdout)
    assert sum(row for c in inspect["counts"].values() for row in c.values()) == n + (not locked)
    if locked:
        assert [e["path"] for e in bench["errors"]] == ["FAKE/locked/"]
        assert [u["path"] for u in inspect["unreadable"]] == ["FAKE/locked/"]


# ------------------------------------------------------------------------------------------------- archives


def _zip_with_encrypted_member(path: Path, image: bytes) -> None:
    """A zip whose second member has the 'encrypted' flag set (zipfile cannot write real encryption)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("REAL/ok.png", image)
        zf.writestr("FAKE/secret.png", image)
    data = bytearray(path.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature, data.index(signature) + 1)  # the second member's headers
        data[at + flag_at] |= 0x1
    path.write_bytes(bytes(data))


def test_archive_links_encrypted_members_and_a_zip_named_tar_gz(cli, tmp_path):
    import tarfile
    import zipfile

    image = encode(Image.new("RGB", (8, 8), (40, 80, 120)), "PNG")
    folder = tmp_path / "folder"
    for label in ("REAL", "FAKE"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            (folder / label / f"{i}.png").write_bytes(image)
    os.link(folder / "REAL" / "0.png", folder / "REAL" / "hard.png")
    (folder / "FAKE" / "soft.png").symlink_to("0.png")
    (folder / "FAKE" / "escape.png").symlink_to("../../../../etc/passwd")  # outside the archive's tree
    with tarfile.open(tmp_path / "links.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=".")
    _zip_with_encrypted_member(tmp_path / "enc.zip", image)
    with zipfile.ZipFile(tmp_path / "really_a_zip.tar.gz", "w") as zf:
        zf.writestr("REAL/a.png", image)
        zf.writestr("FAKE/b.png", image)
    runs = cli.many({name: ["data", "inspect", tmp_path / name, "--json", "--no-progress"]
                     for name in ("links.tar.gz", "enc.zip", "really_a_zip.tar.gz")}
                    | {"bench": ["bench", SHIPPED / "cnn32_int8.tflite", "--data", tmp_path / "enc.zip", "--json",
                                 "--runs", "2", "--workers", "1"]})
    for proc in runs.values():
        assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), proc.stderr
    links = json.loads(runs["links.tar.gz"].stdout)
    assert links["images"] == 9  # 6 files, the hard link, the symlink and the escaping link: none dropped
    assert sum(links["counts"]["train"].values()) == 8
    [bad] = links["unreadable"]
    assert bad["path"].endswith("FAKE/escape.png") and "not a file in the archive" in bad["problem"]
    enc = json.loads(runs["enc.zip"].stdout)
    [bad] = enc["unreadable"]
    assert bad["path"] == "FAKE/secret.png" and "encrypted" in bad["problem"]
    [bad] = json.loads(runs["bench"].stdout)["errors"]
    assert bad["path"] == "FAKE/secret.png" and "encrypted" in bad["error"] and "empty file" not in bad["error"]
    assert json.loads(runs["really_a_zip.tar.gz"].stdout)["images"] == 2


@pytest.mark.slow
def test_archive_members_over_the_size_limit_are_refused_unread(cli, tmp_path):
    import tarfile
    import zipfile

    from edgedetect.preprocess import MAX_IMAGE_BYTES

    big = MAX_IMAGE_BYTES + 2**24  # a whole number of 16 MiB chunks, one more than the limit
    image = encode(Image.new("RGB", (8, 8)), "PNG")
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("REAL/ok.png", image)
        zf.writestr("FAKE/ok.png", image)
        with zf.open("FAKE/big.png", "w", force_zip64=True) as member:
            chunk = bytes(2**24)
            for _ in range(big // len(chunk)):
                member.write(chunk)

    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.left = n

        def readable(self):
            return True

        def readinto(self, b):
            k = min(len(b), self.left)
            b[:k] = bytes(k)
            self.left -= k
            return k

    with tarfile.open(tmp_path / "bomb.tar.gz", "w:gz", compresslevel=1) as tar:
        for name, data in (("REAL/ok.png", image), ("FAKE/ok.png", image)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("FAKE/big.png")
        info.size = big
        tar.addfile(info, io.BufferedReader(Zeros(info.size)))
    assert (tmp_path / "bomb.zip").stat().st_size < 5e6 and (tmp_path / "bomb.tar.gz").stat().st_size < 5e6
    for name in ("bomb.zip", "bomb.tar.gz"):
        proc = cli.run("bench", SHIPPED / "cnn32_int8.tflite", "--data", tmp_path / name, "--json", "--runs", "2",
                   "--workers", "1")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["n_images"] == 2
        [bad] = doc["errors"]
        assert bad["path"] == "FAKE/big.png" and "file too large" in bad["error"]


# ---------------------------------------------------------------------------------------------------- the cache


def _same_size_tars(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """Two tar archives of the same size and mtime and the same image, labelled 3 REAL + 1 FAKE and 1 REAL + 3 FAKE."""
    import tarfile

    image = encode(Image.new("RGB", (8, 8), (10, 20, 30)), "BMP")

    def tar_bytes(labels) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for i, label in enumerate(labels):
                info = tarfile.TarInfo(f"{label}/{i}.bmp")
                info.size, info.mtime = len(image), 0
                tar.addfile(info, io.BytesIO(image))
        return buf.getvalue()

    a, b = tar_bytes(["REAL", "REAL", "REAL", "FAKE"]), tar_bytes(["REAL", "FAKE", "FAKE", "FAKE"])
    assert len(a) == len(b) and a != b
    return tmp_path / "data.tar", a, b


def test_the_cache_is_keyed_by_content_and_survives_damage(tmp_path, monkeypatch):
    from edgedetect.data import load_dataset

    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    path, a, b = _same_size_tars(tmp_path)
    counts = lambda ds: {n: s.counts() for n, s in ds.splits.items()}  # noqa: E731
    path.write_bytes(a)
    os.utime(path, ns=(10**18, 10**18))
    first = counts(load_dataset(path, 8, val_fraction=0.5, progress=False))
    path.write_bytes(b)  # same size, same mtime, labels swapped
    os.utime(path, ns=(10**18, 10**18))
    second = counts(load_dataset(path, 8, val_fraction=0.5, progress=False))
    assert first != second and sum(second["train"].values()) + sum(second["val"].values()) == 4
    assert second["train"]["FAKE"] + second["val"]["FAKE"] == 3
    cached = max((tmp_path / "cache").glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
    good = cached.read_bytes()
    for damage in (b"", good[: len(good) // 2], b"garbage" * 100, b"PK\x03\x04" + bytes(100)):
        cached.write_bytes(damage)
        with pytest.warns(UserWarning, match="damaged cache file"):
            again = counts(load_dataset(path, 8, val_fraction=0.5, progress=False))
        assert again == second
    # a pickled object array is refused, not unpickled
    np.savez(cached, splits=np.array([{"x": 1}], dtype=object))
    with pytest.warns(UserWarning, match="damaged cache file"):
        assert counts(load_dataset(path, 8, val_fraction=0.5, progress=False)) == second


def test_a_zero_byte_cache_file_is_a_warning_not_an_interruption(cli, tmp_path):
    path, a, _ = _same_size_tars(tmp_path)
    path.write_bytes(a)
    env = {**os.environ, "EDGEDETECT_CACHE": str(tmp_path / "cache")}
    model = SHIPPED / "cnn32_int8.tflite"
    assert cli.run("evaluate", model, "--data", path, "--split", "train", "--json", env=env).returncode == 0
    [cached] = (tmp_path / "cache").glob("*.npz")
    cached.write_bytes(b"")
    proc = cli.run("evaluate", model, "--data", path, "--split", "train", "--json", env=env)
    assert proc.returncode == 0 and "interrupted" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert str(cached) in warning and "damaged cache file" in warning
    assert json.loads(proc.stdout)["n"] > 0


def test_an_interrupted_cache_write_leaves_no_temporary(tmp_path, monkeypatch):
    from edgedetect import data

    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    path, a, _ = _same_size_tars(tmp_path)
    path.write_bytes(a)
    (tmp_path / "cache").mkdir()
    stale = tmp_path / "cache" / "old-8px-0123.tmp999999999.npz"  # left by a process killed while writing
    stale.write_bytes(bytes(1000))

    def interrupted(file, **arrays):
        Path(file).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(data.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.load_dataset(path, 8, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written file, and the stale one is gone


# ------------------------------------------------------------------------------------------------------ models


def flipped_model_outcomes(model: Path, n: int, seed: int) -> dict:
    """Flip one byte of ``model``'s structure (not its weights) ``n`` times; load and run each mutant in a forked
    child of a subprocess. Returns ``{"ok": k, "refused": k, "crashed": [...], "bugs": [...]}``."""
    script = """
import json, os, sys, numpy as np
from edgedetect.errors import EdgeDetectError
from edgedetect.model_check import _Flatbuffer
from edgedetect.runtime import Classifier
model, n, seed, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
good = open(model, "rb").read()
fb = _Flatbuffer(good)
weights = np.zeros(len(good), bool)  # the bytes of constant buffers: flipping them only changes the numbers
root = fb.table(fb.deref(0))
for b in root.tables(4):
    start, length = b.vector(0, 1)
    weights[start : start + length] = True
structure = np.flatnonzero(~weights)
rng = np.random.default_rng(seed)
out = {"ok": 0, "refused": 0, "crashed": [], "bugs": []}
images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), np.uint8)
for _ in range(n):
    pos, value = int(structure[rng.integers(0, len(structure))]), int(rng.integers(0, 256))
    data = bytearray(good)
    data[pos] = value
    open(tmp, "wb").write(data)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        try:
            p = Classifier(tmp, threads=1, batch_size=2).predict(images)
            msg = "ok" if ((p >= 0) & (p <= 1)).all() else f"bug: p_fake {p}"
        except EdgeDetectError as e:
            msg = "refused" if "\\n" not in str(e) else f"bug: two lines: {e!r}"
        except BaseException as e:
            msg = f"bug: {type(e).__name__}: {e}"
        os.write(w, msg.encode()[:300])
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    msg = os.read(r, 400).decode()
    os.close(r)
    if os.WIFSIGNALED(status):
        out["crashed"].append((pos, value, os.WTERMSIG(status)))
    elif msg.startswith("bug"):
        out["bugs"].append((pos, value, msg))
    else:
        out[msg] += 1
print(json.dumps(out))
"""
    tmp = Path(tempfile_dir()) / f"mutant_{model.stem}_{seed}.tflite"
    proc = subprocess.run([sys.executable, "-c", script, str(model), str(n), str(seed), str(tmp)], capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="edgedetect-mutants-")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks one child per mutant")
@pytest.mark.parametrize("name, n", [("cnn_pair32_int8", 150), ("mobilenet_v3_small_min32_int8", 150)])
def test_one_flipped_byte_of_a_shipped_model_is_refused_never_a_crash(name, n):
    out = flipped_model_outcomes(SHIPPED / f"{name}.tflite", n, seed=15)
    assert not out["crashed"] and not out["bugs"], out
    assert out["refused"] >= n // 10 and out["ok"] >= n // 10, out  # the flips really hit both kinds of byte


def test_damaged_default_model_is_one_line_in_info_and_predict(cli, tmp_path):
    """Flips at a spread of offsets of the default model, through the CLI: exit 0 or 1, never 134/139."""
    good = (SHIPPED / "cnn_pair32_int8.tflite").read_bytes()
    runs = {}
    for k, pos in enumerate([4, 8, 12, 16, 40, 64, len(good) // 2, len(good) - 8]):
        data = bytearray(good)
        data[pos] ^= 0xFF
        model = tmp_path / f"m{k}.tflite"
        model.write_bytes(bytes(data))
        runs[(model, "info" if k % 2 else "predict")] = (
            ["info", model] if k % 2 else ["predict", REPO / "imgs" / "real" / "cat.jpg", "--model", model, "--json"])
    for (model, command), proc in cli.many(runs).items():
        assert_no_crash(proc)
        if proc.returncode == 1:
            assert_one_error_line(proc, model)
        if command == "predict" and proc.returncode == 0:
            [result] = json.loads(proc.stdout)["results"]
            assert 0.0 <= result["p_fake"] <= 1.0


@pytest.fixture(scope="session")
def odd_models(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Models that load but are no detector: ``{name: (path, the problem their one line states)}``."""
    tf = pytest.importorskip("tensorflow")

    out = tmp_path_factory.mktemp("odd_models")
    models = {}

    def convert(name: str, fn, signature, problem: str, sidecar: bool = True) -> None:
        concrete = tf.function(fn, input_signature=signature).get_concrete_function()
        data = tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()
        path = out / f"{name}.tflite"
        path.write_bytes(data)
        if sidecar:
            size = signature[0].shape[1] or 8
            (out / f"{name}.json").write_text(json.dumps({"input_size": size, "precision": "fp32"}))
        models[name] = (path, problem)

    image = [tf.TensorSpec([None, 8, 8, 3], tf.float32)]
    mean = lambda x: tf.reshape(tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2, 3]), [-1, 1])  # noqa: E731
    convert("mean_pixel", mean, image, "is not a probability in [0, 1]")
    convert("nan_output", lambda x: mean(x) * np.nan, image, "is not a probability in [0, 1]")
    convert("int32_output", lambda x: tf.cast(mean(x), tf.int32), image, "the output tensor is int32")
    convert("uint8_output", lambda x: tf.cast(mean(x), tf.uint8), image,
            "the output tensor is uint8 without quantization parameters")
    convert("bool_input", mean, [tf.TensorSpec([None, 8, 8, 3], tf.bool)], "the input tensor is bool")
    convert("dynamic_size", lambda x: tf.sigmoid(mean(x)), [tf.TensorSpec([None, None, None, 3], tf.float32)],
            "the input size is dynamic", sidecar=False)
    convert("zero_size", lambda x: tf.sigmoid(mean(x)), [tf.TensorSpec([None, 0, 0, 3], tf.float32)],
            "input shape [1, 0, 0, 3]", sidecar=False)
    return models


@pytest.mark.slow  # 10 s
def test_models_that_are_no_detector_are_refused_in_one_line(cli, odd_models, tmp_path):
    image = tmp_path / "img.png"
    Image.new("RGB", (8, 8), (200, 100, 50)).save(image)
    runs = {(name, "predict"): ["predict", image, "--model", path, "--json"] for name, (path, _) in odd_models.items()}
    runs[("bool_input", "bench")] = ["bench", odd_models["bool_input"][0], "--runs", "2"]
    runs[("mean_pixel", "bench")] = ["bench", odd_models["mean_pixel"][0], "--data", tmp_path, "--runs", "2",
                                     "--workers", "1"]
    for (name, command), proc in cli.many(runs).items():
        assert "nan" not in proc.stdout.lower(), proc.stdout  # never a p_fake that is not a number
        try:
            assert_one_error_line(proc, odd_models[name][0], odd_models[name][1])
        except AssertionError as e:
            raise AssertionError(f"{name} {command}: {proc.stdout[-500:]}") from e


@pytest.mark.parametrize("doc, problem", [
    ("[]", "expected a JSON object"), ("null", "expected a JSON object"), ("5", "expected a JSON object"),
    ('"x"', "expected a JSON object"), ('{"labels": 5}', "missing 'input_size'"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"input_size": 32, "precision": "int8", "threshold": "abc"}', "threshold must be a number from 0 to 1"),
    ('{"input_size": 32, "precision": "int8", "threshold": -1}', "threshold must be a number from 0 to 1"),
    ('{"input_size": 32, "precision": "int8", "threshold": 5}', "threshold must be a number from 0 to 1"),
    ('{"input_size": 32, "precision": "int8", "threshold": NaN}', "threshold must be a number from 0 to 1"),
    ('{"input_size": 32, "precision": "int8", "threshold": true}', "threshold must be a number from 0 to 1"),
    ('{"input_size": 32, "precision": "int8", "threshold": 1e400}', "threshold must be a number from 0 to 1"),
    ('{"input_size": "32", "precision": "int8"}', "input_size must be a positive integer, received \"32\""),
    ('{"input_size": 32, "precision": "int8", "labels": ["FAKE", "REAL"]}', "labels"),
    ('{"input_size": 32, "precision": 8}', "precision must be a string"),
    ('{"input_size": 32, "precision": "int8", "preprocessing": "resize"}', "preprocessing must be an object"),
])
def test_bad_sidecar_metadata_is_one_line(doc, problem):
    from edgedetect.metadata import read_metadata

    with tempfile_folder() as folder:
        model = shipped_copy(folder)
        model.with_suffix(".json").write_text(doc)
        with pytest.raises(EdgeDetectError, match="not valid model metadata") as info:
            read_metadata(model)
        message = str(info.value)
        assert problem in message and "\n" not in message and str(model.with_suffix(".json")) in message


def test_bad_sidecar_through_the_cli_and_unknown_fields_accepted(cli, tmp_path):
    bad = shipped_copy(tmp_path)
    bad.with_suffix(".json").write_text('{"input_size": 32, "precision": "int8", "threshold": 1e400}')
    newer = tmp_path / "newer"
    newer.mkdir()
    ok = shipped_copy(newer)
    doc = json.loads(ok.with_suffix(".json").read_text())
    doc["preprocessing"].update(mode="crops", crop_size=32, trained_sizes=[32, 64])  # fields another version adds
    doc["future_field"] = {"nested": [1, {"x": None}]}
    ok.with_suffix(".json").write_text(json.dumps(doc))
    image = REPO / "imgs" / "real" / "cat.jpg"
    runs = cli.many({"bad": ["predict", image, "--model", bad], "bad info": ["info", bad],
                     "ok": ["predict", image, "--model", ok, "--json"]})
    for key in ("bad", "bad info"):
        assert_one_error_line(runs[key], bad.with_suffix(".json"), "threshold must be a number from 0 to 1")
    assert runs["ok"].returncode == 0, runs["ok"].stderr


def tempfile_folder():
    import tempfile

    class Folder:
        def __enter__(self):
            self.tmp = tempfile.TemporaryDirectory()
            return Path(self.tmp.name)

        def __exit__(self, *exc):
            self.tmp.cleanup()

    return Folder()


def test_models_that_are_no_files_and_a_bad_model_among_good_ones(cli, tmp_path):
    image = REPO / "imgs" / "real" / "cat.jpg"
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.tflite"
    zero.symlink_to("/dev/zero")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes())
    good = shipped_copy(tmp_path)
    runs = cli.many({"fifo predict": ["predict", image, "--model", fifo], "fifo info": ["info", fifo],
                     "zero predict": ["predict", image, "--model", zero], "zero info": ["info", zero],
                     "threads": ["predict", image, "--threads", "1000"],
                     "bench": ["bench", good, bad, "--runs", "2", "--json"]})
    for key in ("fifo predict", "fifo info", "zero predict", "zero info"):
        named = fifo if key.startswith("fifo") else zero
        assert_one_error_line(runs[key], named, "not a regular file (a pipe, socket or device)")
    assert_one_error_line(runs["threads"], "--threads 1000", "use 1 to")
    bench = runs["bench"]
    assert_one_error_line(bench, bad, "not a valid TFLite model")
    doc = json.loads(bench.stdout)
    assert [row["model"] for row in doc["rows"]] == [str(good)] and doc["rows"][0]["latency_ms_p50"] > 0


# ------------------------------------------------------------------------------------------------ output files


def test_force_never_replaces_a_pipe_or_device_and_a_failed_write_keeps_the_results(cli, tmp_path):
    import resource

    image = REPO / "imgs" / "real" / "cat.jpg"
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    device = tmp_path / "null.csv"
    device.symlink_to(os.devnull)
    model = SHIPPED / "cnn32_int8.tflite"
    runs = cli.many({"fifo": ["predict", image, "--plot", fifo, "--force"],
                     "device": ["bench", model, "--runs", "2", "--csv", device, "--force"]})
    for key, named in (("fifo", fifo), ("device", device)):
        assert_one_error_line(runs[key], named, "is not a regular file")
    assert stat_kind(fifo) == "fifo" and os.path.realpath(device) == os.devnull

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    for args, out in ((["predict", image, "--plot", tmp_path / "p.png"], tmp_path / "p.png"),
                      (["bench", model, "--runs", "2", "--plot", tmp_path / "b.png", "--csv", tmp_path / "b.csv"],
                       tmp_path / "b.png")):
        # -B: Python would write .pyc files under the same limit, cut short, and break later imports
        proc = cli.run(*args, python=("-B",), preexec_fn=small_files)
        assert_one_error_line(proc, out, "cannot write (File too large)")
        assert ("REAL" in proc.stdout or "FAKE" in proc.stdout) if args[0] == "predict" else "ms/img" in proc.stdout
        assert not out.exists()
    assert (tmp_path / "b.csv").read_text().startswith("model,")  # the small file was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "null.csv", "pipe.png"]


def stat_kind(path: Path) -> str:
    import stat

    mode = os.lstat(path).st_mode
    return "fifo" if stat.S_ISFIFO(mode) else "file" if stat.S_ISREG(mode) else "other"


def test_training_commands_without_the_train_extra_are_one_line(cli, tmp_path):
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"PK\x05\x06" + bytes(18))
    for args in (["train", "--arch", "cnn", "--data", tmp_path], ["convert", keras_file, "--quant", "fp32"]):
        proc = cli.run(*args, block=TF_PACKAGES)
        assert_one_error_line(proc, f"edgedetect {args[0]}", "pip install 'edgedetect[train]'")


def test_every_shipped_model_passes_the_model_check_and_operators_off_the_list_are_refused():
    import struct

    from edgedetect.model_check import ModelError, _Flatbuffer, check_model

    for model in sorted(SHIPPED.glob("*.tflite")):
        check_model(model.read_bytes())
    good = (SHIPPED / "cnn32_int8.tflite").read_bytes()
    fb = _Flatbuffer(good)
    code = fb.table(fb.deref(0)).tables(1)[0]
    for value, problem in ((32, "custom operator"), (200, "operator with code 200, which edgedetect does not run")):
        data = bytearray(good)
        for field, fmt in ((0, "<b"), (3, "<i")):  # deprecated_builtin_code and builtin_code
            at = code._field(field, struct.calcsize(fmt))
            if at is not None:
                struct.pack_into(fmt, data, at, min(value, 127) if fmt == "<b" else value)
        with pytest.raises(ModelError, match=problem):
            check_model(bytes(data))


def test_globs_match_name_by_name_over_the_loop_safe_walk(tmp_path):
    from edgedetect.listing import glob_images

    for rel in ("a/x.jpg", "a/b/y.jpg", "a/b/c/z.png", "a/.hidden.jpg", "ab/w.jpg", "a/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / rel, "PNG")
    (tmp_path / "a" / "b" / "loop").symlink_to(tmp_path / "a")

    def names(pattern: str) -> list[str]:
        return sorted(p.relative_to(tmp_path).as_posix() for p in glob_images(str(tmp_path / pattern))[0])

    assert names("a/*.jpg") == ["a/x.jpg"]  # not a/b/y.jpg: * stays within one name, and skips .hidden
    assert names("a/**/*.jpg") == ["a/b/y.jpg", "a/x.jpg"]  # each once, although a/b/loop leads back to a/
    assert names("a*/*.jpg") == ["a/x.jpg", "ab/w.jpg"]
    assert names("a/*") == ["a/b/c/z.png", "a/b/y.jpg", "a/x.jpg"]  # a matched folder is searched
    assert glob_images(str(tmp_path / "nothing/*.jpg"))[1] is False
