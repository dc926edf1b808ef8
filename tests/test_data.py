"""The dataset loader, `edgedetect data inspect` and `edgedetect data fetch`, on small folders and archives made here."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CIFAKE_TEST, CIFAKE_TRAIN, needs_shared_data, synthetic_images, write_image_folder
from edgedetect import data as data_mod
from edgedetect.archives import iter_files
from edgedetect.data import ImageFiles, StreamingSplit, carve_validation, default_memory_budget, load_dataset
from edgedetect.layout import classify
from edgedetect.errors import EdgeDetectError
from edgedetect.inspect import format_report, inspect_dataset

SIZE = 16


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty array cache, so none reads another's (or the user's) arrays."""
    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEDETECT_MEMORY_BUDGET", raising=False)


def write_class(root: Path, folder: str, label: int, n: int = 3, seed: int = 0) -> list[Path]:
    """``n`` synthetic images of class ``label`` (0 REAL-like smooth, 1 FAKE-like noisy) in ``root/folder``."""
    x, y = synthetic_images(2 * n, SIZE, seed)
    out = root / folder
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(x[y == label]):
        paths.append(out / f"{i} ({seed}).png")
        Image.fromarray(img).save(paths[-1])
    return paths


def make_tar(folder: Path, dest: Path, prefix: str = "") -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for f in sorted(folder.rglob("*")):
            tar.add(f, arcname=prefix + f.relative_to(folder).as_posix(), recursive=False)
    return dest


def make_zip(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
    return dest


# -- layouts -------------------------------------------------------------------------------------------------

LAYOUTS = {
    "cifake": ({"train/REAL": 0, "train/FAKE": 1, "test/REAL": 0, "test/FAKE": 1}, {"train", "test"}),
    "faces": ({"train/0": 0, "train/1": 1, "validate/0": 0, "validate/1": 1, "test/0": 0, "test/1": 1},
              {"train", "val", "test"}),
    "genimage": ({"sdv4/train/nature": 0, "sdv4/train/ai": 1, "sdv4/val/nature": 0, "sdv4/val/ai": 1},
                 {"train", "val"}),
    "bare": ({"REAL": 0, "FAKE": 1}, {"train"}),
    "mixed-case": ({"Train/real": 0, "TRAIN/Fake": 1, "Validation/NATURE": 0, "validation/Ai": 1}, {"train", "val"}),
    "class-above-split": ({"REAL/train": 0, "FAKE/train": 1, "REAL/test": 0, "FAKE/test": 1}, {"train", "test"}),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_recognised_layouts_give_the_right_splits_and_labels(tmp_path, name):
    folders, dataset_splits = LAYOUTS[name]
    for i, (folder, label) in enumerate(folders.items()):
        write_class(tmp_path, folder, label, n=3, seed=i)
    ds = load_dataset(tmp_path, SIZE, val_fraction=0.34, progress=False)
    carved = "val" not in dataset_splits
    assert set(ds.splits) == dataset_splits | ({"val"} if carved else set())
    assert ds.val_carved == carved
    for split in ds.splits.values():
        assert split.x.dtype == np.uint8 and split.x.shape[1:] == (SIZE, SIZE, 3)
        for path, label in zip(split.paths, split.y):
            expected = next(v for f, v in folders.items() if path.startswith(f + "/"))
            assert label == expected, path
    assert sum(len(s) for s in ds.splits.values()) == 3 * len(folders)


def test_classify_reads_folder_names_case_insensitively():
    assert classify("Train/Real/a.jpg") == ("train", 0)
    assert classify("x/VALIDATE/1/a.png") == ("val", 1)
    assert classify("nature/b.png") == (None, 0)
    assert classify("misc/b.png") == (None, None)
    assert classify("real/fake/b.png") == (None, None)  # ambiguous: no guess


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archives_load_the_same_arrays_as_the_folder(tmp_path, kind):
    folder = write_image_folder(tmp_path / "d", n_per_class=3, size=SIZE, split="train")
    write_image_folder(folder, n_per_class=2, size=SIZE, split="test", seed=1)
    archive = (make_tar(folder, tmp_path / "d.tar.gz", prefix="./") if kind == "tar.gz"
               else make_zip(folder, tmp_path / "d.zip"))
    a = load_dataset(folder, SIZE, use_cache=False, progress=False)
    b = load_dataset(archive, SIZE, use_cache=False, progress=False)
    assert set(a.splits) == set(b.splits) == {"train", "val", "test"}
    for name in a.splits:
        assert [Path(p).as_posix().removeprefix("./") for p in b.splits[name].paths] == a.splits[name].paths
        np.testing.assert_array_equal(a.splits[name].x, b.splits[name].x)
        np.testing.assert_array_equal(a.splits[name].y, b.splits[name].y)


def test_macos_junk_in_a_zip_is_not_an_image(tmp_path):
    folder = write_image_folder(tmp_path / "d", n_per_class=2, size=SIZE)
    archive = make_zip(folder, tmp_path / "d.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("__MACOSX/REAL/._0 (1).png", b"\x00\x05\x16\x07 resource fork")
        zf.writestr("REAL/._1 (1).png", b"\x00\x05\x16\x07 resource fork")
    ds = load_dataset(archive, SIZE, val_fraction=0.5, progress=False)
    assert ds.unreadable == [] and sum(len(s) for s in ds.splits.values()) == 4


# -- errors ----------------------------------------------------------------------------------------------------

def test_images_inside_and_outside_split_folders_is_ambiguous(tmp_path):
    write_image_folder(tmp_path, n_per_class=2, size=SIZE, split="train")
    write_class(tmp_path, "REAL", 0, n=2)
    with pytest.raises(EdgeDetectError, match=r"ambiguous layout: images both inside split folders \(train/FAKE/ \(2\), "
                                              r"train/REAL/ \(2\)\) and outside them \(REAL/ \(2\)\)"):
        load_dataset(tmp_path, SIZE, progress=False)


@pytest.mark.parametrize("folder, why", [
    ("REAL/fake", r"REAL/fake/ is under both a REAL and a FAKE folder \(REAL, fake\)"),
    ("train/test/FAKE", r"train/test/FAKE/ is under more than one split folder \(train, test\)"),
])
def test_a_path_named_two_ways_is_ambiguous(tmp_path, folder, why):
    write_image_folder(tmp_path, n_per_class=2, size=SIZE)
    write_class(tmp_path, folder, 1, n=1)
    with pytest.raises(EdgeDetectError, match="ambiguous layout: " + why):
        load_dataset(tmp_path, SIZE, progress=False)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "train" / "REAL").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(EdgeDetectError, match=r"no image files found \(looked for .bmp, .gif, .jpeg"):
        load_dataset(tmp_path, SIZE, progress=False)


def test_images_without_class_folders_is_an_error_showing_the_folders(tmp_path):
    write_class(tmp_path, "cats", 0, n=2)
    with pytest.raises(EdgeDetectError, match=r"no class folders found \(found: cats/\)"):
        load_dataset(tmp_path, SIZE, progress=False)


def test_one_class_split_is_an_error(tmp_path):
    write_class(tmp_path, "train/REAL", 0, n=2)
    with pytest.raises(EdgeDetectError, match=r"split 'train' has only one class \(\{'REAL': 2, 'FAKE': 0\}\)"):
        load_dataset(tmp_path, SIZE, progress=False)


def test_missing_path_and_unknown_file_type_are_errors(tmp_path):
    with pytest.raises(EdgeDetectError, match="dataset not found"):
        load_dataset(tmp_path / "nope", SIZE)
    (tmp_path / "data.rar").write_bytes(b"x")
    with pytest.raises(EdgeDetectError, match=r"not a dataset \(expected a folder, a .tar.gz/.tgz/.tar or a .zip"):
        load_dataset(tmp_path / "data.rar", SIZE)


def test_damaged_archive_is_an_error_not_a_traceback(tmp_path):
    folder = write_image_folder(tmp_path / "d", n_per_class=3, size=SIZE)
    good = make_tar(folder, tmp_path / "d.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(EdgeDetectError, match="cut.tar.gz: cannot read archive"):
        load_dataset(tmp_path / "cut.tar.gz", SIZE, use_cache=False, progress=False)


# -- unreadable and unlabelled files ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_unreadable_files_are_listed_and_skipped(tmp_path, kind):
    folder = write_image_folder(tmp_path / "d", n_per_class=3, size=SIZE, split="train")
    (folder / "train/REAL/broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "train/FAKE/empty.png").write_bytes(b"")
    src = folder if kind == "folder" else make_zip(folder, tmp_path / "d.zip")
    ds = load_dataset(src, SIZE, val_fraction=0.34, progress=False)
    problems = dict(ds.unreadable)
    assert set(problems) == {"train/REAL/broken.jpg", "train/FAKE/empty.png"}
    assert "not an image file" in problems["train/REAL/broken.jpg"]
    assert "empty file" in problems["train/FAKE/empty.png"]
    paths = ds.splits["train"].paths + ds.splits["val"].paths
    assert len(paths) == 6 and not set(paths) & set(problems)
    assert ds.describe()["unreadable"] == 2


def test_images_outside_class_folders_are_listed(tmp_path):
    write_image_folder(tmp_path, n_per_class=2, size=SIZE)
    write_class(tmp_path, "samples", 0, n=1)
    ds = load_dataset(tmp_path, SIZE, val_fraction=0.5, progress=False)
    assert ds.unlabelled == ["samples/0 (0).png"]
    assert ds.describe()["unlabelled"] == 1


# -- validation carve ------------------------------------------------------------------------------------------

def test_carved_validation_is_stratified_and_deterministic(tmp_path):
    write_class(tmp_path, "REAL", 0, n=20)
    write_class(tmp_path, "FAKE", 1, n=10)
    a = load_dataset(tmp_path, SIZE, val_fraction=0.2, seed=3, use_cache=False, progress=False)
    b = load_dataset(tmp_path, SIZE, val_fraction=0.2, seed=3, use_cache=False, progress=False)
    c = load_dataset(tmp_path, SIZE, val_fraction=0.2, seed=4, use_cache=False, progress=False)
    assert a.splits["val"].counts() == {"REAL": 4, "FAKE": 2}  # 20% of each class
    assert a.splits["train"].counts() == {"REAL": 16, "FAKE": 8}
    assert a.splits["val"].paths == b.splits["val"].paths
    assert a.splits["val"].paths != c.splits["val"].paths
    assert not set(a.splits["val"].paths) & set(a.splits["train"].paths)


def test_carve_rejects_a_fraction_outside_0_1():
    split = data_mod.SplitArrays(np.zeros((4, 2, 2, 3), np.uint8), np.array([0, 1, 0, 1]), list("abcd"))
    with pytest.raises(EdgeDetectError, match="--val-fraction must be between 0 and 1.*received 1.5"):
        carve_validation(split, 1.5, 0)


# -- cache ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["folder", "tar.gz"])
def test_cache_hit_returns_identical_arrays_without_decoding(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(data_mod, "FOLDER_CACHE_MIN_IMAGES", 1)
    folder = write_image_folder(tmp_path / "d", n_per_class=3, size=SIZE, split="train")
    src = folder if kind == "folder" else make_tar(folder, tmp_path / "d.tar.gz")
    first = load_dataset(src, SIZE, progress=False)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data_mod, "_decode_all", no_decoding)
    second = load_dataset(src, SIZE, progress=False)
    for name in first.splits:
        np.testing.assert_array_equal(first.splits[name].x, second.splits[name].x)
        np.testing.assert_array_equal(first.splits[name].y, second.splits[name].y)
        assert first.splits[name].paths == second.splits[name].paths


def test_folder_cache_notices_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "FOLDER_CACHE_MIN_IMAGES", 1)
    folder = write_image_folder(tmp_path / "d", n_per_class=3, size=SIZE, split="train")
    before = load_dataset(folder, SIZE, progress=False)
    write_class(folder, "train/FAKE", 1, n=1, seed=9)  # one new file
    after = load_dataset(folder, SIZE, progress=False)
    assert sum(map(len, after.splits.values())) == sum(map(len, before.splits.values())) + 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_small_folders_are_not_cached(tmp_path):
    folder = write_image_folder(tmp_path / "d", n_per_class=3, size=SIZE)
    load_dataset(folder, SIZE, progress=False)
    assert data_mod.FOLDER_CACHE_MIN_IMAGES > 6 and not (tmp_path / "cache").exists()


# -- streaming --------------------------------------------------------------------------------------------------

def test_a_folder_over_the_memory_budget_streams_the_same_pixels(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "FOLDER_CACHE_MIN_IMAGES", 1)
    folder = write_image_folder(tmp_path / "d", n_per_class=4, size=SIZE, split="train")
    write_image_folder(folder, n_per_class=2, size=SIZE, split="test", seed=1)
    (folder / "train/REAL/broken.png").write_bytes(b"not a png")
    in_memory = load_dataset(folder, SIZE, val_fraction=0.25, use_cache=False, progress=False)
    streamed = load_dataset(folder, SIZE, val_fraction=0.25, progress=False, memory_budget=SIZE * SIZE * 3 * 5)
    assert streamed.streaming and not in_memory.streaming
    assert not list((tmp_path / "cache").glob("*.npz"))  # streaming writes no array cache
    assert streamed.unreadable and streamed.unreadable[0][0] == "train/REAL/broken.png"
    for name, split in streamed.splits.items():
        assert isinstance(split, StreamingSplit) and isinstance(split.x, ImageFiles)
        assert split.x.shape == in_memory.splits[name].x.shape
        assert split.paths == in_memory.splits[name].paths
        np.testing.assert_array_equal(split.x[np.arange(len(split))], in_memory.splits[name].x)
        np.testing.assert_array_equal(np.asarray(split.x), in_memory.splits[name].x)
    train = streamed.splits["train"]
    np.testing.assert_array_equal(train.x[1], in_memory.splits["train"].x[1])
    batches = list(train.batches(4))
    assert [len(b[0]) for b in batches] == [4, 2] and batches[1][0].dtype == np.uint8
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), train.y)


def test_an_archive_over_the_memory_budget_says_to_extract_it(tmp_path):
    folder = write_image_folder(tmp_path / "d", n_per_class=4, size=SIZE)
    archive = make_tar(folder, tmp_path / "d.tar.gz")
    with pytest.raises(EdgeDetectError, match=r"more than the memory budget.*Extract the archive and pass the folder"):
        load_dataset(archive, SIZE, progress=False, memory_budget=SIZE * SIZE * 3 * 5)


def test_memory_budget_comes_from_the_environment(monkeypatch):
    assert default_memory_budget() == 4 * 2**30
    monkeypatch.setenv("EDGEDETECT_MEMORY_BUDGET", "512M")
    assert default_memory_budget() == 512 * 2**20
    monkeypatch.setenv("EDGEDETECT_MEMORY_BUDGET", "lots")
    with pytest.raises(EdgeDetectError, match=r"EDGEDETECT_MEMORY_BUDGET='lots' is not a size.*e.g. 8G"):
        default_memory_budget()


def test_iter_files_yields_unreadable_files_as_empty_bytes(tmp_path):
    folder = write_image_folder(tmp_path, n_per_class=1, size=SIZE)
    (folder / "REAL" / "gone.png").symlink_to(folder / "missing.png")  # a dangling link cannot be read
    files = dict(iter_files(folder))
    assert set(files) == {"FAKE/0 (2).png", "REAL/0 (1).png", "REAL/gone.png"}
    assert files["REAL/gone.png"] == b"" and files["REAL/0 (1).png"].startswith(b"\x89PNG")


def test_symlinked_folders_are_followed_and_loops_end(tmp_path):
    real = write_image_folder(tmp_path / "elsewhere", n_per_class=2, size=SIZE)
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "d" / "train" / "REAL").symlink_to(real / "REAL", target_is_directory=True)
    (tmp_path / "d" / "train" / "FAKE").symlink_to(real / "FAKE", target_is_directory=True)
    (tmp_path / "d" / "train" / "REAL" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    ds = load_dataset(tmp_path / "d", SIZE, val_fraction=0.5, progress=False)
    assert sorted(ds.splits["train"].paths + ds.splits["val"].paths) == [
        "train/FAKE/0 (2).png", "train/FAKE/1 (2).png", "train/REAL/0 (1).png", "train/REAL/1 (1).png"]


# -- inspect ----------------------------------------------------------------------------------------------------

def planted(tmp_path: Path) -> Path:
    """train/test folders with one duplicate inside train (FAKE) and two train images copied into test."""
    root = write_image_folder(tmp_path / "planted", n_per_class=4, size=SIZE, split="train")
    write_image_folder(root, n_per_class=3, size=SIZE, split="test", seed=5)
    shutil.copy(root / "train/FAKE/0 (2).png", root / "train/FAKE/copy.png")
    shutil.copy(root / "train/REAL/1 (1).png", root / "test/REAL/leak.png")
    shutil.copy(root / "train/REAL/2 (1).png", root / "test/FAKE/leak-relabelled.png")
    Image.new("L", (40, 24)).save(root / "test/REAL/gray.jpg")  # another size, mode and format
    (root / "test/FAKE/broken.jpg").write_bytes(b"garbage")
    return root


@pytest.mark.parametrize("kind", ["folder", "tar.gz", "zip"])
def test_inspect_counts_sizes_and_planted_duplicates(tmp_path, kind):
    root = planted(tmp_path)
    src = {"folder": lambda: root, "tar.gz": lambda: make_tar(root, tmp_path / "p.tar.gz"),
           "zip": lambda: make_zip(root, tmp_path / "p.zip")}[kind]()
    r = inspect_dataset(src, progress=False)
    assert r["splits"] == ["train", "test"] and r["classes"] == ["REAL", "FAKE"]
    assert r["counts"] == {"train": {"REAL": 4, "FAKE": 5}, "test": {"REAL": 5, "FAKE": 4}}
    assert r["images"] == 19
    assert [u["path"] for u in r["unreadable"]] == ["test/FAKE/broken.jpg"]
    assert r["stats"]["train"]["REAL"] == {"width": {"min": 16, "median": 16, "max": 16},
                                           "height": {"min": 16, "median": 16, "max": 16},
                                           "modes": {"RGB": 4}, "formats": {"PNG": 4}}
    assert r["stats"]["test"]["REAL"]["width"] == {"min": 16, "median": 16, "max": 40}
    assert r["stats"]["test"]["REAL"]["modes"] == {"RGB": 4, "L": 1}
    assert r["stats"]["test"]["REAL"]["formats"] == {"PNG": 4, "JPEG": 1}
    within = r["duplicates_within"]
    assert within["test"]["groups"] == 0
    assert within["train"] | {"examples": None} == {"groups": 1, "extra_copies": 1, "mixed_labels": 0, "examples": None}
    assert within["train"]["examples"] == [["train/FAKE/0 (2).png", "train/FAKE/copy.png"]]
    across = r["duplicates_across"]["train/test"]
    assert across["groups"] == 2 and across["files"] == {"train": 2, "test": 2} and across["mixed_labels"] == 1
    assert ["test/REAL/leak.png", "train/REAL/1 (1).png"] in across["examples"]
    text = format_report(r)
    assert "train/test: 2 shared images (2 in train, 2 in test), 1 with different labels" in text
    assert "unreadable: test/FAKE/broken.jpg" in text


def test_inspect_compares_separate_sources(tmp_path):
    train = write_image_folder(tmp_path / "train-set", n_per_class=3, size=SIZE, split="train")
    test = write_image_folder(tmp_path / "test-set", n_per_class=2, size=SIZE, split="test", seed=4)
    clean = inspect_dataset([train, test], progress=False)
    assert clean["duplicates_across"]["train/test"]["groups"] == 0
    shutil.copy(train / "train/FAKE/1 (2).png", test / "test/FAKE/leak.png")
    leaky = inspect_dataset([train, test], progress=False)
    assert leaky["duplicates_across"]["train/test"]["examples"] == [
        ["test-set:test/FAKE/leak.png", "train-set:train/FAKE/1 (2).png"]]


def test_inspect_reports_layout_problems_instead_of_failing(tmp_path):
    write_image_folder(tmp_path, n_per_class=2, size=SIZE, split="train")
    write_class(tmp_path, "REAL", 0, n=1)
    r = inspect_dataset(tmp_path, progress=False)
    assert len(r["layout_problems"]) == 1 and "images both inside split folders" in r["layout_problems"][0]


def test_inspect_cli_json(cli, tmp_path):
    code, out, err = cli("data", "inspect", planted(tmp_path), "--json", "--no-progress")
    assert code == 0, err
    doc = json.loads(out)
    assert {"splits", "classes", "counts", "unreadable", "duplicates_within", "duplicates_across"} <= set(doc)
    assert doc["duplicates_across"]["train/test"]["groups"] == 2


def test_inspect_cli_missing_path_is_one_line(cli, tmp_path):
    code, out, err = cli("data", "inspect", tmp_path / "nope")
    assert code == 1 and err.strip().count("\n") == 0 and "dataset not found" in err


# -- fetch ------------------------------------------------------------------------------------------------------

@pytest.fixture
def kagglehub(monkeypatch, tmp_path):
    """``install(fn=None)``: replace kagglehub.dataset_download (by default with a fake that writes a tiny
    CIFAKE-like dataset into output_dir, or into a fake cache); returns the list of calls it received."""
    kh = pytest.importorskip("kagglehub")
    calls = []

    def fake_download(handle, path=None, *, force_download=False, output_dir=None):
        calls.append({"handle": handle, "output_dir": output_dir, "force_download": force_download})
        target = Path(output_dir) if output_dir else tmp_path / "kagglehub-cache" / handle
        write_image_folder(target, n_per_class=2, size=SIZE, split="train")
        write_image_folder(target, n_per_class=1, size=SIZE, split="test", seed=2)
        return str(target)

    def install(fn=fake_download):
        monkeypatch.setattr(kh, "dataset_download", fn)
        return calls

    return install


def test_fetch_downloads_to_the_folder_asked_for_and_says_what_next(cli, tmp_path, kagglehub):
    calls = kagglehub()
    code, out, err = cli("data", "fetch", "cifake", "--to", tmp_path / "cifake")
    assert code == 0, err
    assert calls == [{"handle": "birdy654/cifake-real-and-ai-generated-synthetic-images",
                      "output_dir": str(tmp_path / "cifake"), "force_download": False}]
    assert f"downloaded to {tmp_path / 'cifake'}" in out
    assert "found: train 2 REAL + 2 FAKE, test 1 REAL + 1 FAKE" in out
    assert f"edgedetect train --arch cnn --data {tmp_path / 'cifake'}" in out
    assert f"edgedetect data inspect {tmp_path / 'cifake'}" in out


def test_fetch_without_output_dir_support_links_the_folder(tmp_path, kagglehub):
    from edgedetect.fetch import fetch

    def old_download(handle, path=None, *, force_download=False):  # kagglehub < 0.3.10
        target = tmp_path / "cache" / handle
        write_image_folder(target, n_per_class=1, size=SIZE)
        return str(target)

    kagglehub(old_download)
    landed = fetch("faces", tmp_path / "faces")
    assert landed == tmp_path / "faces" and landed.is_symlink()
    assert landed.resolve() == (tmp_path / "cache/philosopher0808/real-vs-ai-generated-faces-dataset").resolve()


@pytest.mark.parametrize("error, message", [
    ("network", r"cannot reach Kaggle to download birdy654/cifake-real-and-ai-generated-synthetic-images \(no network\?\)"),
    ("credentials", r"Kaggle refused the download .*set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, or put "
                    r"kaggle.json in ~/.kaggle/"),
    ("forbidden", r"Kaggle refused the download .*403 Client Error"),
])
def test_fetch_errors_are_one_line_saying_what_to_do(cli, tmp_path, kagglehub, error, message):
    import requests
    from kagglehub.exceptions import KaggleApiHTTPError, UnauthenticatedError

    def failing(handle, path=None, *, force_download=False, output_dir=None):
        if error == "network":
            raise requests.ConnectionError("HTTPSConnectionPool(host='api.kaggle.com'): Failed to resolve")
        if error == "credentials":
            raise UnauthenticatedError()
        response = requests.Response()
        response.status_code = 403
        raise KaggleApiHTTPError("403 Client Error.\n\nYou don't have permission", response=response)

    kagglehub(failing)
    code, out, err = cli("data", "fetch", "cifake")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "Traceback" not in err
    assert "download it by hand from https://www.kaggle.com/datasets/birdy654/" in err
    assert re.search(message, err), err


def test_fetch_without_kagglehub_says_how_to_install_it(monkeypatch):
    from edgedetect.fetch import fetch

    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import fails as if not installed
    with pytest.raises(EdgeDetectError, match=r"fetching needs kagglehub: pip install kagglehub"):
        fetch("cifake")


def test_fetch_keeps_the_traceback_of_a_bug(tmp_path, kagglehub):
    from edgedetect.fetch import fetch

    def buggy(handle, path=None, *, force_download=False, output_dir=None):
        raise KeyError("internal")

    kagglehub(buggy)
    with pytest.raises(KeyError):
        fetch("cifake")


# -- the real CIFAKE tarballs ---------------------------------------------------------------------------------

def test_inspect_the_real_cifake_test_tarball():
    needs_shared_data()
    r = inspect_dataset(CIFAKE_TEST, progress=False)
    assert r["counts"] == {"test": {"REAL": 5013, "FAKE": 4803}}
    assert r["unreadable"] == [] and r["layout_problems"] == []
    assert r["duplicates_within"]["test"]["groups"] == 0
    assert r["stats"]["test"]["FAKE"]["width"] == {"min": 32, "median": 32, "max": 32}
    assert r["stats"]["test"]["FAKE"]["formats"] == {"JPEG": 4803}


@pytest.mark.slow  # 22 s: every CIFAKE image
def test_the_real_cifake_train_and_test_tarballs_do_not_leak():
    needs_shared_data()
    if not CIFAKE_TRAIN.is_file():
        pytest.skip(f"needs {CIFAKE_TRAIN}")
    r = inspect_dataset([CIFAKE_TRAIN, CIFAKE_TEST], progress=False)
    assert r["counts"] == {"train": {"REAL": 50000, "FAKE": 49080}, "test": {"REAL": 5013, "FAKE": 4803}}
    assert r["duplicates_across"]["train/test"]["groups"] == 0
    assert r["duplicates_within"]["train"]["groups"] == 0
