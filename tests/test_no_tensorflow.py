"""The runtime never imports TensorFlow, and works where TensorFlow cannot be imported at all."""

import json
import subprocess
import sys

from conftest import REPO, TF_BLOCKER, TF_PACKAGES, write_image_folder


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_runtime_modules_do_not_import_tensorflow():
    proc = run_python(
        "import sys\n"
        "import edgedetect, edgedetect.cli, edgedetect.runtime, edgedetect.predict, edgedetect.preprocess\n"
        "import edgedetect.commands.predict, edgedetect.commands.info, edgedetect.plots\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(heavy)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_predict_and_info_work_when_tensorflow_cannot_be_imported(cli, tiny_tflite, tmp_path):
    folder = write_image_folder(tmp_path / "imgs", n_per_class=3)
    blocked = run_python(TF_BLOCKER + "import tensorflow")
    assert "blocked by the test" in blocked.stderr  # the blocker does block

    proc = cli.run("predict", folder, "--model", tiny_tflite["int8"], "--json", block=TF_PACKAGES)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["n_images"] == 6 and {r["label"] for r in doc["results"]} <= {"REAL", "FAKE"}
    assert doc["interpreter"].startswith(("ai-edge-litert", "tflite-runtime"))

    proc = cli.run("info", tiny_tflite["int8"], block=TF_PACKAGES)
    assert proc.returncode == 0, proc.stderr
    assert "uint8" in proc.stdout
