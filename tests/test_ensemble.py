import json

import numpy as np
import pytest

from conftest import write_image_folder


@pytest.mark.slow  # 22 s: it trains the members
def test_ensemble_averages_members_and_reads_like_a_run(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    from edgedetect.errors import EdgeDetectError
    from training.ensemble import make_ensemble
    from training.train import TrainConfig, train

    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    data = write_image_folder(tmp_path / "data", n_per_class=16, size=32)
    runs = [train(TrainConfig(arch=arch, data=str(data), epochs=1, batch_size=8, out=str(tmp_path / arch)),
                  progress=False) for arch in ("cnn", "cnn_wide")]
    with pytest.raises(EdgeDetectError, match="two or more runs"):
        make_ensemble([str(runs[0])], str(tmp_path / "e"))
    out = make_ensemble([str(r) for r in runs], str(tmp_path / "e"))
    model = keras.saving.load_model(out / "best.keras", safe_mode=True)
    members = [keras.saving.load_model(r / "best.keras") for r in runs]
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    expected = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["threshold"] <= 1.0 and metrics["val"]["n"] > 0
    with pytest.raises(EdgeDetectError, match="already holds a model"):
        make_ensemble([str(r) for r in runs], str(out))


def test_ensemble_refuses_runs_with_different_val_carves(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from edgedetect.errors import EdgeDetectError
    from training.ensemble import make_ensemble

    for name, seed in (("a", 0), ("b", 1)):
        run = tmp_path / name
        run.mkdir()
        (run / "best.keras").write_bytes(b"")
        (run / "config.json").write_text(json.dumps({"config": {"data": "d", "img_size": 32, "val_fraction": 0.1,
                                                               "seed": seed, "arch": "cnn"}}))
    with pytest.raises(EdgeDetectError, match="val splits would overlap"):
        make_ensemble([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "e"))


@pytest.mark.slow  # 31 s: it trains the members
def test_ensemble_of_members_at_different_sizes_upscales_in_the_graph(tmp_path, monkeypatch):
    """A member trained at 48 px on 32-px images joins a 32-px one: the ensemble takes 32 px and upscales in the
    graph as Pillow did for that member in training (within a grey level), and it converts to .tflite."""
    keras = pytest.importorskip("keras")
    from conversion.convert import ConversionConfig, convert
    from edgedetect.preprocess import load_image
    from edgedetect.runtime import Classifier
    from training.ensemble import make_ensemble
    from training.train import TrainConfig, train

    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    data = write_image_folder(tmp_path / "data", n_per_class=16, size=32)
    runs = [train(TrainConfig(arch="cnn", data=str(data), img_size=size, epochs=1, batch_size=8,
                              out=str(tmp_path / f"cnn{size}")), progress=False) for size in (48, 32)]
    out = make_ensemble([str(r) for r in runs], str(tmp_path / "e"))
    model = keras.saving.load_model(out / "best.keras", safe_mode=True)
    assert model.input_shape == (None, 32, 32, 3)
    assert json.loads((out / "config.json").read_text())["config"]["img_size"] == 32

    files = sorted(data.rglob("*.png"))[:8]
    x32 = np.stack([load_image(f, 32) for f in files]).astype("float32")
    x48 = np.stack([load_image(f, 48) for f in files]).astype("float32")  # what the 48-px member trained on
    m48, m32 = (keras.saving.load_model(r / "best.keras") for r in runs)
    p_members = (m48.predict(x48, verbose=0) + m32.predict(x32, verbose=0)) / 2
    p = model.predict(x32, verbose=0)
    assert np.abs(p - p_members).max() < 0.01
    assert np.std(p) > 0  # not a constant that would pass any comparison

    report = convert(out / "best.keras", ConversionConfig(precisions=("fp32",), out=str(tmp_path / "e.tflite")),
                     log=lambda _: None)
    np.testing.assert_allclose(Classifier(report.paths[0], threads=1).predict(x32.astype(np.uint8)),
                               p.reshape(-1), atol=1e-5)
