"""The lean runtime: no matplotlib in the base install (pictures ask for the [plot] extra in one line), and a
successful predict prints nothing on stderr (LiteRT's native INFO line included)."""

import os
from importlib import metadata

import pytest

from conftest import write_image_folder
from edgedetect.errors import EdgeDetectError
from edgedetect.runtime import Classifier

def test_successful_predict_prints_nothing_on_stderr(cli):
    done = cli.run("predict", "imgs/real", timeout=300)
    assert done.returncode == 0 and "imgs/real/cat.jpg" in done.stdout
    assert done.stderr == ""


def test_a_rejected_model_leaves_stderr_working(tmp_path, capfd):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + bytes(200))
    with pytest.raises(EdgeDetectError, match="not a valid TFLite model"):
        Classifier(bad, threads=1)
    os.write(2, b"after\n")  # fd 2 was given back, not left pointing at the hidden capture
    assert capfd.readouterr().err.endswith("after\n")


def test_matplotlib_is_not_a_base_requirement():
    base = [r for r in metadata.requires("edgedetect") or [] if "extra ==" not in r]
    plot = [r for r in metadata.requires("edgedetect") or [] if "extra == \"plot\"" in r]
    assert not [r for r in base if r.lower().startswith("matplotlib")]
    assert [r for r in plot if r.lower().startswith("matplotlib")]


@pytest.mark.parametrize("command, option", [("predict", "--plot"), ("bench", "--plot"), ("evaluate", "--plots")])
def test_pictures_without_matplotlib_say_how_to_get_it_in_one_line(cli, tiny_tflite, tmp_path, command, option):
    data = write_image_folder(tmp_path / "data", n_per_class=2)
    out = tmp_path / ("pics" if option == "--plots" else "p.png")
    args = {"predict": [data, "--model", tiny_tflite["int8"]],
            "bench": [tiny_tflite["int8"], "--data", data, "--runs", "1", "--workers", "1"],
            "evaluate": [tiny_tflite["int8"], "--data", data]}[command]
    done = cli.run(command, *args, option, out, block=("matplotlib",), timeout=300)  # a base install, no [plot]
    assert done.returncode == 1
    assert done.stderr == f'error: {option} needs matplotlib: pip install "edgedetect[plot]"\n'
    assert done.stdout == "" and not out.exists()  # refused before any work
