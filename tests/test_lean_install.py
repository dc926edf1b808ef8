"""The lean runtime: no matplotlib in the base install (pictures ask for the [plot] extra in one line), and a
successful predict prints nothing on stderr (LiteRT's native INFO line included)."""

import os
import subprocess
import sys
from importlib import metadata

import pytest

from conftest import REPO, write_image_folder
from edgedetect.errors import EdgeDetectError
from edgedetect.runtime import Classifier

# Prepended to a script, it makes importing matplotlib fail, as in a base install without the [plot] extra.
MPL_BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Blocker())
"""


def cli_without_matplotlib(*args) -> subprocess.CompletedProcess:
    script = MPL_BLOCKER + "import sys\nfrom edgedetect.cli import main\nsys.argv = ['edgedetect', *sys.argv[1:]]\nmain()\n"
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_successful_predict_prints_nothing_on_stderr():
    done = subprocess.run([sys.executable, "-m", "edgedetect", "predict", "imgs/real"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
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
def test_pictures_without_matplotlib_say_how_to_get_it_in_one_line(tiny_tflite, tmp_path, command, option):
    data = write_image_folder(tmp_path / "data", n_per_class=2)
    out = tmp_path / ("pics" if option == "--plots" else "p.png")
    args = {"predict": [data, "--model", tiny_tflite["int8"]],
            "bench": [tiny_tflite["int8"], "--data", data, "--runs", "1", "--workers", "1"],
            "evaluate": [tiny_tflite["int8"], "--data", data]}[command]
    done = cli_without_matplotlib(command, *args, option, out)
    assert done.returncode == 1
    assert done.stderr == f'error: {option} needs matplotlib: pip install "edgedetect[plot]"\n'
    assert done.stdout == "" and not out.exists()  # refused before any work
