"""Training: every registered architecture trains, keeps its preprocessing in the graph, saves and reloads safely;
the BatchNorm pitfall is handled; an interrupted run resumes to the same weights; the CLI writes a complete run.

Single steps run eagerly: tracing a training graph of MobileNetV3/ResNet50 costs tens of seconds on a busy CPU,
more than the steps themselves.
"""

import json
import sys
import urllib.error

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_images, write_image_folder
from edgedetect.errors import EdgeDetectError

keras = pytest.importorskip("keras")

import training.data_prep as data_prep  # noqa: E402
import training.loop as loop  # noqa: E402
from training.model_spec import BN_MOMENTUM, REGISTRY, build_model, get_spec  # noqa: E402
from training.train import TrainConfig, resume, train  # noqa: E402

SIZE = 32
# Keras 3.15 on numpy 2 warns on every eager tensor conversion; not ours to fix, and it floods the output.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _features(model: "keras.Model", x: np.ndarray) -> np.ndarray:
    """The pooled features (input of the head) for raw 0-255 images, inference mode."""
    return keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("pool").output)(x, training=False))


def _manual_features(name: str, model: "keras.Model", x: np.ndarray) -> np.ndarray:
    """The same features computed by normalising outside the graph, as the spec's ``preprocessing`` documents."""
    documented = get_spec(name).preprocessing
    if documented.startswith("Rescaling(1/127.5, offset=-1) inside the Keras application"):
        # The application with include_preprocessing=False and the same weights, fed x/127.5 - 1.
        backbone = model.layers[1]
        app = {"MobileNetV3Small": keras.applications.MobileNetV3Small,
               "MobileNetV3Large": keras.applications.MobileNetV3Large}[backbone.name]
        bare = app(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, include_preprocessing=False,
                   minimalistic=name.endswith("_min"))
        bare.set_weights(backbone.get_weights())
        y = bare(x / 127.5 - 1.0, training=False)
    elif documented.startswith("caffe"):
        caffe = keras.applications.resnet50.preprocess_input(x.copy())  # RGB->BGR, minus the ImageNet mean
        inside = keras.ops.convert_to_numpy(model.get_layer("caffe_preprocess")(x))
        np.testing.assert_allclose(inside, caffe, atol=1e-4)
        y = model.get_layer("resnet50")(caffe, training=False)
    elif documented in ("Rescaling(1/255)", "Rescaling(1/32) of the front end's output"):
        # A plain chain: apply every layer after the in-graph rescaling to x/255 (x/32 with no front end).
        layers = model.layers
        assert layers[1].name == "rescale"
        y = x / (255.0 if documented == "Rescaling(1/255)" else 32.0)
        for layer in layers[2:]:
            y = layer(y, training=False)
            if layer.name == "pool":
                return keras.ops.convert_to_numpy(y)
    else:
        raise AssertionError(f"no check for the preprocessing '{documented}' of '{name}'; add one here")
    return keras.ops.convert_to_numpy(model.get_layer("pool")(y))


def test_npr_front_is_the_image_minus_its_nearest_down_up_copy_soft_clipped():
    from training.model_spec import NPR_CLIP

    model = build_model("photo_cnn", SIZE, front="npr")
    x = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3)).astype("float32")
    residual = x - x[:, ::2, ::2].repeat(2, axis=1).repeat(2, axis=2)
    front = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("npr_unscale").output)(x))
    np.testing.assert_allclose(front, NPR_CLIP * np.tanh(residual / NPR_CLIP), atol=1e-4)
    assert np.all(front[:, ::2, ::2] == 0)  # each block's top-left pixel is its own copy
    with pytest.raises(EdgeDetectError, match="unknown front end 'fft'; valid: none, npr, highpass"):
        build_model("photo_cnn", SIZE, front="fft")


@pytest.mark.slow  # 7-14 s an architecture
@pytest.mark.parametrize("name", list(REGISTRY))
def test_arch_trains_one_step_keeps_preprocessing_in_graph_and_reloads_safely(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(name, SIZE)
    assert model.input_shape == (None, SIZE, SIZE, 3) and model.output_shape == (None, 1)
    x, y = synthetic_images(8, SIZE, seed=0)
    x = x.astype("float32")
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", run_eagerly=True)
    head_before = model.get_layer("p_fake").get_weights()[0].copy()
    model.fit(x, y.astype("float32"), batch_size=8, epochs=1, verbose=0)
    assert model.optimizer.iterations.numpy() == 1
    assert not np.allclose(model.get_layer("p_fake").get_weights()[0], head_before)  # the step did train

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    p, p_loaded = (keras.ops.convert_to_numpy(m(x, training=False)).ravel() for m in (model, loaded))
    np.testing.assert_allclose(p_loaded, p, atol=1e-6)
    assert np.all((p >= 0) & (p <= 1))

    # The saved model takes raw RGB 0-255: its features equal the documented manual preprocessing's.
    features = _features(loaded, x)
    manual = _manual_features(name, loaded, x)
    assert features.std() > 0
    np.testing.assert_allclose(features, manual, rtol=1e-4, atol=1e-4 * float(np.abs(features).max()))


@pytest.mark.slow  # 83 s
def test_mobilenet_batchnorm_momentum_lets_inference_outputs_vary():
    # Measured with this setup (80 SGD steps): BN momentum 0.9 gives inference-mode p_fake std 0.45 and accuracy
    # 0.95 on new images; Keras' default 0.999 gives std 0.002 and accuracy 0.50 (every image about the same
    # p_fake) although training-mode accuracy is 1.0. With 40 steps even 0.9 is not enough (std 0.001).
    keras.utils.set_random_seed(0)
    model = build_model("mobilenet_v3_small", SIZE)
    bns = [layer for layer in model.layers[1].layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) > 30 and {layer.momentum for layer in bns} == {BN_MOMENTUM} and BN_MOMENTUM == 0.9

    steps, batch = 80, 16
    x, y = synthetic_images(steps * batch, SIZE, seed=1)
    schedule = keras.optimizers.schedules.CosineDecay(0.05, steps)
    # SGD rather than Adam: half the cost per eager step, same finding.
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "binary_crossentropy", run_eagerly=True)
    model.fit(x.astype("float32"), y.astype("float32"), batch_size=batch, epochs=1, verbose=0, shuffle=False)
    x_new, y_new = synthetic_images(64, SIZE, seed=2)
    p = keras.ops.convert_to_numpy(model(x_new.astype("float32"), training=False)).ravel()
    assert p.std() > 0.3, f"inference-mode outputs near-constant (std {p.std():.4f})"
    assert np.mean((p >= 0.5) == y_new) >= 0.85


def test_unknown_arch_and_unavailable_weights_are_clear_errors(tmp_path, monkeypatch):
    valid = ", ".join(REGISTRY)
    assert valid.startswith("mobilenet_v3_small, mobilenet_v3_large, resnet50, cnn")
    with pytest.raises(EdgeDetectError) as info:
        get_spec("mobilenet_v4")
    assert str(info.value) == f"unknown architecture 'mobilenet_v4'; valid: {valid}"
    with pytest.raises(EdgeDetectError, match="'cnn' has no pretrained weights; use --weights none"):
        build_model("cnn", SIZE, "imagenet")
    with pytest.raises(EdgeDetectError, match="--weights .*nope.h5: file not found"):
        build_model("resnet50", SIZE, str(tmp_path / "nope.h5"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(EdgeDetectError) as info:
        build_model("mobilenet_v3_small", SIZE, "imagenet")
    message = str(info.value)
    assert message.startswith("cannot load imagenet weights for mobilenet_v3_small (URLError:")
    assert "pass --weights FILE, or use --weights none" in message and "\n" not in message


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny 32 px dataset: train (val carved from it) and test."""
    root = tmp_path_factory.mktemp("traindata") / "synthetic"
    write_image_folder(root, n_per_class=16, size=SIZE, split="train", seed=10)
    write_image_folder(root, n_per_class=8, size=SIZE, split="test", seed=11)
    return root


@pytest.fixture(scope="module")
def cli_run(cli, folder, tmp_path_factory):
    """`edgedetect train --arch cnn --epochs 2` run from an empty folder, as a user types it."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setenv("EDGEDETECT_CACHE", str(cwd / "cache"))
        code, _, err = cli("train", "--arch", "cnn", "--data", folder, "--epochs", "2", "--batch-size", "8")
    assert code == 0, err
    return cwd


@pytest.mark.slow  # the cli_run fixture trains (6 s)
def test_train_cli_writes_a_complete_run_and_latest_pointer(cli_run):
    pointer = cli_run / "runs" / "latest.json"
    run_dir = json.loads(pointer.read_text())["run_dir"]
    run_dir = cli_run / "runs" / run_dir.rsplit("/", 1)[-1]
    assert run_dir.name.startswith("cnn-") and run_dir.is_dir()
    assert {"best.keras", "last.keras", "config.json", "history.json", "metrics.json", "curves.png",
            "state.json"} <= {p.name for p in run_dir.iterdir()}

    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["arch"] == "cnn" and config["config"]["epochs"] == 2 and config["config"]["img_size"] == SIZE
    assert config["dataset"]["counts"]["test"] == {"REAL": 8, "FAKE": 8} and config["dataset"]["val"] == "carved from train"
    assert config["params"] > 0 and "keras" in config["versions"]

    history = json.loads((run_dir / "history.json").read_text())
    for key in ("loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc", "lr"):
        assert len(history[key]) == 2, key

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["threshold"] <= 1 and "val" in metrics["threshold_method"]
    assert metrics["test"]["n"] == 16 and metrics["val"]["n"] == 4 and metrics["epochs_run"] == 2
    with Image.open(run_dir / "curves.png") as img:
        assert img.format == "PNG"
    best = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
    assert best.input_shape == (None, SIZE, SIZE, 3)


def test_train_cli_unknown_arch_lists_valid_names(cli, monkeypatch, folder, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("train", "--arch", "vit", "--data", folder)
    assert code == 1
    assert err == f"error: unknown architecture 'vit'; valid: {', '.join(REGISTRY)}\n"
    assert not (tmp_path / "runs").exists()


def test_train_cli_imagenet_offline_is_one_clear_line(cli, monkeypatch, folder, tmp_path):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    code, _, err = cli("train", "--arch", "mobilenet_v3_small", "--data", folder,
                           "--weights", "imagenet", "--out", tmp_path / "run")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot load imagenet weights for mobilenet_v3_small (URLError:")
    assert last.endswith("pass --weights FILE, or use --weights none")
    assert "Traceback" not in err


def _weights(path):
    return keras.saving.load_model(path, safe_mode=True).get_weights()


@pytest.mark.slow  # 8 s, after the cli_run fixture's training
def test_resumed_run_lands_on_the_uninterrupted_weights(cli_run, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    checkpoint = loop.RunCheckpoint

    class Interrupting(checkpoint):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)  # epoch 1's checkpoint is written, then the "Ctrl-C"
            raise KeyboardInterrupt

    run_dir = tmp_path / "interrupted"
    cfg = TrainConfig(arch="cnn", data=str(folder), epochs=2, batch_size=8, out=str(run_dir))  # the CLI run's settings
    monkeypatch.setattr(loop, "RunCheckpoint", Interrupting)
    started = ["edgedetect", "train", "--arch", "cnn", "--out", str(run_dir)]
    resumed_with = ["edgedetect", "train", "--resume", str(run_dir)]
    monkeypatch.setattr(sys, "argv", started)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    interrupted_state = json.loads((run_dir / "state.json").read_text())
    assert interrupted_state["epoch"] == 1 and interrupted_state["train_seconds"] > 0
    assert not (run_dir / "metrics.json").exists()

    monkeypatch.setattr(loop, "RunCheckpoint", checkpoint)
    monkeypatch.setattr(sys, "argv", resumed_with)
    assert resume(run_dir, progress=False) == run_dir
    # config.json keeps the command that reproduces the run, and says how it was resumed
    config = json.loads((run_dir / "config.json").read_text())
    assert config["command"] == started and config["resumed_with"] == [resumed_with]
    reference = next((cli_run / "runs").glob("cnn-*"))
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 2
    # the first epoch's time, spent before the interruption, is still part of the run's total
    assert json.loads((run_dir / "metrics.json").read_text())["train_seconds"] > round(interrupted_state["train_seconds"], 1)
    resumed, uninterrupted = _weights(run_dir / "last.keras"), _weights(reference / "last.keras")
    assert len(resumed) == len(uninterrupted)
    for a, b in zip(resumed, uninterrupted):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    history, expected = (json.loads((d / "history.json").read_text()) for d in (run_dir, reference))
    np.testing.assert_allclose(history["loss"], expected["loss"], atol=1e-6)
    # And the run moved: the second epoch's weights differ from the first's (it is not comparing two no-ops).
    assert history["loss"][0] != history["loss"][1]


# ------------------------------------------------------------------------------------------- distillation


def test_distillation_targets_mix_label_and_teacher_and_keep_the_label_recoverable():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1], np.float32)
    p = np.array([0.0, 1.0, 0.3, 0.0, 1.0, 0.8, 0.5, 0.5])  # saturated and undecided teachers included
    t = data_prep.distillation_targets(y, p)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t > 0.5, y == 1)  # the metrics read the label back this way
    np.testing.assert_allclose(t[[2, 5, 6, 7]], [0.15, 0.9, 0.25, 0.75], atol=1e-6)
    assert data_prep.TEACHER_WEIGHT == 0.5


def test_label_metrics_score_soft_targets_against_their_labels():
    from edgedetect.metrics import binary_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400).astype(np.float32)
    p_teacher, p_student = rng.random(400), np.clip(0.6 * y + 0.4 * rng.random(400), 0, 1)
    soft = data_prep.distillation_targets(y, p_teacher)
    accuracy, auc = loop.label_metrics()
    accuracy.update_state(soft[:, None], p_student[:, None])
    auc.update_state(soft[:, None], p_student[:, None])
    expected = binary_metrics(y, p_student, 0.5)
    assert float(accuracy.result()) == pytest.approx(expected["accuracy"], abs=1e-6)
    assert float(auc.result()) == pytest.approx(expected["roc_auc"], abs=5e-3)  # Keras' AUC bins 200 thresholds
    plain = keras.metrics.BinaryAccuracy()
    plain.update_state(soft[:, None], p_student[:, None])
    assert float(plain.result()) < 0.1  # what the stock metric makes of soft targets: why the wrapper exists


@pytest.mark.slow  # 10 s
def test_train_with_teacher_learns_from_its_outputs_and_saves_a_plain_best_model(cli_run, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    teacher = next((cli_run / "runs").glob("cnn-*")) / "best.keras"
    run_dir = tmp_path / "student"
    cfg = TrainConfig(arch="cnn", data=str(folder), epochs=1, batch_size=8, out=str(run_dir), teacher=str(teacher))
    train(cfg, progress=False)

    from edgedetect.data import load_dataset

    train_split = load_dataset(str(folder), SIZE, val_fraction=cfg.val_fraction, seed=cfg.seed).split("train")
    p_teacher = np.load(run_dir / "teacher.npy")
    expected = keras.saving.load_model(teacher, safe_mode=True).predict(train_split.x.astype("float32"), verbose=0)
    np.testing.assert_allclose(p_teacher, expected.reshape(-1), atol=1e-6)
    assert json.loads((run_dir / "config.json").read_text())["config"]["teacher"] == str(teacher)
    history = json.loads((run_dir / "history.json").read_text())
    assert 0.0 <= history["accuracy"][0] <= 1.0 and history["accuracy"][0] * len(train_split) % 1 == pytest.approx(0, abs=1e-3)

    # best.keras carries no training state, so plain Keras loads it in a process that never imported edgedetect.
    code = ("import sys, keras; m = keras.saving.load_model(sys.argv[1], safe_mode=True); "
            "assert not m.compiled; print(m.output_shape)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code, str(run_dir / "best.keras")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(None, 1)")


def test_teacher_of_another_input_size_is_one_clear_error(cli, tiny_keras_model, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    code, _, err = cli("train", "--arch", "cnn", "--data", folder, "--epochs", "1",
                           "--teacher", tiny_keras_model, "--out", tmp_path / "run")
    assert code == 1
    assert err.strip().splitlines()[-1] == (f"error: --teacher {tiny_keras_model}: takes 16 px images, the run trains "
                                            "at 32 px; pass --img-size 16 or another teacher")


@pytest.mark.slow  # 12 s
def test_init_seed_changes_the_weights_but_not_the_val_carve(cli_run, folder, tmp_path, monkeypatch):
    """--init-seed gives an ensemble member of its own (other weights and order) on the same val split."""
    from training.ensemble import make_ensemble

    monkeypatch.setenv("EDGEDETECT_CACHE", str(tmp_path / "cache"))
    reference = next((cli_run / "runs").glob("cnn-*"))  # seed 0, 2 epochs, batch 8
    runs = []
    for name in ("a", "b"):
        cfg = TrainConfig(arch="cnn", data=str(folder), epochs=2, batch_size=8, init_seed=1, out=str(tmp_path / name))
        runs.append(train(cfg, progress=False))
    same = [_weights(r / "last.keras") for r in runs]
    for a, b in zip(*same):
        np.testing.assert_array_equal(a, b)  # an init seed is as reproducible as --seed
    other = _weights(reference / "last.keras")
    assert any(not np.allclose(a, b) for a, b in zip(same[0], other))
    history = [json.loads((d / "history.json").read_text()) for d in (runs[0], reference)]
    assert history[0]["loss"] != history[1]["loss"]
    # The val carve is --seed's: same split sizes, and `edgedetect ensemble` accepts the pair.
    assert json.loads((runs[0] / "metrics.json").read_text())["val"]["n"] == \
        json.loads((reference / "metrics.json").read_text())["val"]["n"]
    out = make_ensemble([str(reference), str(runs[0])], str(tmp_path / "ensemble"))
    assert (out / "best.keras").is_file()


def test_train_cli_refuses_codec_shares_over_one_before_loading_tensorflow(cli, folder, tmp_path):
    done = cli.run("train", "--arch", "photo_cnn", "--preprocess", "crops", "--data", folder, "--jpeg-prob", "0.6",
                   "--webp-prob", "0.5", "--out", tmp_path / "run", block=("tensorflow", "keras"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: --jpeg-prob 0.6 + --webp-prob 0.5 exceed 1")
    assert not (tmp_path / "run").exists()


def test_train_cli_refuses_crop_options_on_a_resize_run_before_loading_tensorflow(cli, folder, tmp_path):
    done = cli.run("train", "--arch", "cnn", "--data", folder, "--jitter", "0.3", "--max-crops", "4",
                   "--out", tmp_path / "run", block=("tensorflow", "keras"))
    assert done.returncode == 1
    assert done.stderr == ("error: --max-crops, --jitter only apply to --preprocess crops (this run resizes whole "
                           "images); drop them or add --preprocess crops\n")
    assert not (tmp_path / "run").exists()
