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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TINY_SIZE, write_image_folder
from edgedetect.errors import EdgeDetectError

CLASSIFIED = None  # expected outcome of an unusual but valid image


# ------------------------------------------------------------------------------------------------ running the CLI


def cli(*args, prefix=(), env=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "edgedetect", *map(str, args)], capture_output=True,
                          encoding="utf-8", errors="surrogateescape", cwd=REPO, env=env, timeout=timeout)


def cli_many(runs: dict, prefix=()) -> dict:
    """``{key: args}`` -> ``{key: CompletedProcess}``, a few at a time (each run is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {key: pool.submit(cli, *args, prefix=prefix) for key, args in runs.items()}
        return {key: f.result() for key, f in futures.items()}


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
def predicted(corpus, tiny_tflite, as_user):
    """One ``predict --json`` run over the whole corpus folder (and the folder named folder.jpg given directly)."""
    root, _ = corpus
    proc = cli("predict", root, root / "folder.jpg", "--model", tiny_tflite["fp32"], "--json", prefix=as_user or ())
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


def test_predict_human_output_lists_failures_at_the_end_on_a_strict_utf8_terminal(corpus, tiny_tflite, as_user,
                                                                                 tmp_path):
    root, cases = corpus
    plot = tmp_path / "corpus.png"
    # PYTHONIOENCODING=utf-8:strict is what a UTF-8 desktop locale gives; a non-UTF-8 name must not crash it.
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    proc = subprocess.run([*(as_user or ()), sys.executable, "-m", "edgedetect", "predict", str(root), "--model",
                           str(tiny_tflite["fp32"]), "--plot", str(plot)], capture_output=True, cwd=REPO, env=env,
                          timeout=180)
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


def test_bench_goes_on_past_bad_files_and_lists_them(corpus, tiny_tflite, as_user):
    root, cases = corpus
    proc = cli("bench", tiny_tflite["fp32"], "--data", root, "--json", "--runs", "3", "--warmup", "1",
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
def test_empty_and_one_class_datasets(command, data, code, problem, datasets, tiny_tflite):
    model, folder = tiny_tflite["fp32"], datasets[data]
    args = {"predict": ["predict", folder, "--model", model, "--json"],
            "evaluate": ["evaluate", model, "--data", folder, "--json"],
            "bench": ["bench", model, "--data", folder, "--json", "--runs", "3", "--workers", "1"]}[command]
    proc = cli(*args)
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


def test_evaluate_scores_the_readable_images_of_a_split_with_bad_files(datasets, tiny_tflite):
    proc = cli("evaluate", tiny_tflite["fp32"], "--data", datasets["with_bad_files"], "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 12 and sum(map(sum, report["confusion_matrix"])) == 12


def test_evaluate_lists_the_bad_files_and_exits_1(datasets, tiny_tflite):
    data = datasets["with_bad_files"]
    runs = cli_many({"json": ["evaluate", tiny_tflite["fp32"], "--data", data, "--json"],
                     "human": ["evaluate", tiny_tflite["fp32"], "--data", data]})
    for proc in runs.values():
        assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr
    shown = runs["human"].stdout + runs["human"].stderr
    assert all(name in runs["json"].stdout and name in shown for name in BAD_IN_DATASET)


def test_evaluate_plots_a_mistake_with_a_non_utf8_file_name(tiny_tflite, tmp_path):
    data = write_image_folder(tmp_path / "data", n_per_class=2, split="test")
    try:
        os.rename(data / "test" / "REAL" / "0 (1).png", os.path.join(os.fsencode(data / "test" / "REAL"), NON_UTF8))
    except OSError:
        pytest.skip("this file system does not take non-UTF-8 file names")
    # threshold 0 calls everything FAKE: every REAL image, the renamed one too, is a mistake to draw
    proc = cli("evaluate", tiny_tflite["fp32"], "--data", data, "--threshold", "0", "--plots", tmp_path / "plots")
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
def bad_model_runs(bad_models, corpus, datasets) -> dict:
    root, _ = corpus
    runs = {(name, "predict"): ["predict", root / "plain.jpg", "--model", path]
            for name, (path, _, _) in bad_models.items()}
    for name in ("random_bytes.tflite", "gray_input.tflite"):  # the same check in every command; two suffice
        path = bad_models[name][0]
        runs[(name, "evaluate")] = ["evaluate", path, "--data", datasets["one_class"]]
        runs[(name, "bench")] = ["bench", path, "--runs", "3"]
        runs[(name, "info")] = ["info", path]
    return cli_many(runs)


def test_bad_models_cover_the_list(bad_models):
    assert sorted(bad_models) == sorted(BAD_MODELS)


@pytest.mark.parametrize("name", BAD_MODELS)
def test_a_bad_model_is_one_error_line_for_every_command(name, bad_models, bad_model_runs):
    _, named, problem = bad_models[name]
    runs = {command: proc for (model, command), proc in bad_model_runs.items() if model == name}
    assert "predict" in runs
    for proc in runs.values():
        assert_one_error_line(proc, named, problem)


def test_a_model_without_metadata_runs_with_one_warning_line(tiny_tflite, corpus, tmp_path):
    bare = tmp_path / "bare.tflite"
    shutil.copy(tiny_tflite["fp32"], bare)  # without bare.json beside it
    proc = cli("predict", corpus[0] / "plain.jpg", "--model", bare, "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert str(bare) in warning and "no metadata file" in warning and "threshold 0.5" in warning
    assert json.loads(proc.stdout)["results"][0]["label"] in ("REAL", "FAKE")


def test_a_folder_named_like_a_model_is_a_usage_error(tmp_path, corpus):
    (tmp_path / "model.tflite").mkdir()
    proc = cli("predict", corpus[0] / "plain.jpg", "--model", tmp_path / "model.tflite")
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


def test_untrusted_keras_is_refused_by_convert_and_evaluate_in_one_line(lambda_keras, datasets, tmp_path):
    from typer.testing import CliRunner

    from edgedetect.cli import app

    out = tmp_path / "out"
    out.mkdir()
    existing = out / "downloaded_fp32.tflite"
    existing.write_bytes(b"the model that was here before")
    proc = cli("convert", lambda_keras, "--quant", "fp32", "--out", out, "--force")
    assert_one_error_line(proc, lambda_keras, "cannot load", "Lambda", "safe_mode")
    # refused even with --force: the file already there is untouched and no temporary file is left behind
    assert sorted(out.iterdir()) == [existing] and existing.read_bytes() == b"the model that was here before"
    # evaluate in-process (a second TensorFlow start-up would double the test's time); the CLI prints this error
    # as its one line, as it did for convert
    result = CliRunner().invoke(app, ["evaluate", str(lambda_keras), "--data", str(datasets["with_bad_files"])])
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


def test_output_paths_missing_read_only_or_existing(tiny_tflite, tiny_keras_model, corpus, datasets, as_user,
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
    runs = cli_many({key: args for key, (args, _, _) in refused.items()}, prefix=as_user or ())
    for key, (_, named, problem) in refused.items():
        assert_one_error_line(runs[key], named, problem)
    assert not missing.exists() and not any(read_only.iterdir())
    assert all(path.read_bytes() == b"made before: " + name.encode() for name, path in old.items())

    forced = cli_many({"predict": [*predict, "--plot", old["old.png"], "--force"],
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


def maps_file(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` mapped in memory (LiteRT maps the model file it loads)."""
    try:
        return str(path) in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def interrupt(args: list, ready, settle: float, wait: float = 120) -> tuple[int, str]:
    """Run the CLI and press Ctrl-C (SIGINT to its process group, as a terminal does) ``settle`` seconds after
    ``ready(stderr line)`` is true (or after ``wait`` seconds without such a line). ``ready`` may instead be a
    ``Path``: ready once the process has that file mapped (a successful predict prints nothing on stderr).

    Returns ``(exit code, all of stderr)``; fails when the command ends before it could be interrupted.
    """
    proc = subprocess.Popen([sys.executable, "-m", "edgedetect", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [*map(lines.put, proc.stderr), lines.put(None)], daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + wait
        while True:
            if isinstance(ready, Path) and maps_file(proc.pid, ready):
                break
            step = 0.02 if isinstance(ready, Path) else None
            try:
                line = lines.get(timeout=max(0.0, min(deadline - time.monotonic(), step or wait)))
            except queue.Empty:
                if time.monotonic() < deadline:
                    continue
                break  # no sign of progress: press Ctrl-C anyway
            assert line is not None, f"it ended before Ctrl-C (exit {proc.wait()}): {''.join(seen)}"
            seen.append(line)
            if not isinstance(ready, Path) and ready(line):
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
def test_ctrl_c_during_predict_and_bench(command, big_folder, tiny_tflite):
    model = tiny_tflite["fp32"]
    if command == "predict":
        args = ["predict", big_folder, "--model", model, "--json"]
        settle = 0.5  # the model is loaded (mapped) when decoding begins
        ready = model
    else:
        args = ["bench", model, "--data", big_folder, "--workers", "2", "--runs", "20"]
        settle = 1.5  # past the latency runs, into the worker processes' pass
        ready = lambda line: line.startswith("data:")  # noqa: E731
    code, stderr = interrupt(args, ready=ready, settle=settle, wait=10 if command == "predict" else 120)
    assert_interrupted(code, stderr)


def test_ctrl_c_during_training(tmp_path):
    pytest.importorskip("tensorflow")
    data = write_image_folder(tmp_path / "data", n_per_class=8)
    run = tmp_path / "run"
    code, stderr = interrupt(["train", "--arch", "cnn", "--data", data, "--img-size", TINY_SIZE, "--epochs", 1000,
                              "--patience", 1000, "--batch-size", 8, "--out", run],
                             ready=lambda line: line.startswith("epoch "), settle=0.2)
    assert_interrupted(code, stderr)
    # the finished epoch's checkpoint is whole and no half-written one is left, wherever Ctrl-C landed
    assert (run / "last.keras").is_file() and (run / "state.json").is_file()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
