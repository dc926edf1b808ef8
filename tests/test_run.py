"""The run folder's one reader (training.run.Run) and the precision table (edgedetect.precision): small and offline."""

import json

import pytest

from edgedetect.errors import EdgeDetectError
from edgedetect.precision import BY_NAME, PRECISIONS, color_of, get_precision, split_stem
from training.run import Run


def _run(folder, config=None, metrics=None, model=True):
    folder.mkdir(parents=True)
    if model:
        (folder / "best.keras").write_bytes(b"")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if metrics is not None:
        (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    return folder


def test_open_reads_settings_metrics_threshold_and_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    run = Run.open(_run(tmp_path / "runs" / "r", {"config": {"arch": "cnn", "data": "data"}},
                        {"threshold": 0.3, "threshold_method": "youden J on val", "val": {"accuracy": 1.0}}))
    assert run.arch == "cnn" and run.threshold == 0.3
    assert run.threshold_source == f"training run {run.path / 'metrics.json'} (youden J on val)"
    assert run.data_path() == tmp_path / "data"  # relative to the folder above runs/
    assert run.labelled_metrics()["val"] == {"dataset": "data", "split": "val", "accuracy": 1.0}


def test_missing_and_corrupt_files_are_one_error_naming_folder_and_file(tmp_path):
    bare = _run(tmp_path / "bare", model=False)
    with pytest.raises(EdgeDetectError, match=r"bare: not a training run \(no config.json in .*bare\)"):
        Run.open(bare)
    no_model = _run(tmp_path / "no_model", {"config": {}}, model=False)
    with pytest.raises(EdgeDetectError, match=r"no_model: not a training run \(no best.keras in"):
        Run.open(no_model, need_model=True)
    corrupt = _run(tmp_path / "corrupt", {"config": {}}, metrics="{not json")
    with pytest.raises(EdgeDetectError, match=r"corrupt/metrics.json: corrupt run file, not valid JSON"):
        Run.open(corrupt)
    with pytest.raises(EdgeDetectError, match=r"corrupt/metrics.json: corrupt run file"):
        Run.around(corrupt / "best.keras")


def test_around_finds_a_run_only_beside_a_keras_file(tmp_path):
    folder = _run(tmp_path / "r", metrics={"threshold": 0.25})
    assert Run.around(folder / "best.keras").threshold == 0.25  # metrics.json alone is enough for the threshold
    assert Run.around(folder / "best_int8.tflite") is None
    assert Run.around(tmp_path / "elsewhere" / "m.keras") is None


def test_latest_follows_the_pointer_and_says_what_is_wrong(tmp_path):
    with pytest.raises(EdgeDetectError, match=r"no training run found \(.*latest.json is missing\)"):
        Run.latest(tmp_path / "runs")
    run = Run(_run(tmp_path / "runs" / "r", {"config": {"arch": "cnn"}}))
    run.point_latest()
    assert Run.latest(tmp_path / "runs").path == run.path.resolve()
    (tmp_path / "runs" / "latest.json").write_text("[]")
    with pytest.raises(EdgeDetectError, match=r"latest.json: corrupt run file, expected a JSON object"):
        Run.latest(tmp_path / "runs")


def test_ensemble_arch_is_a_registry_name_in_old_and_new_configs(tmp_path):
    old = Run.open(_run(tmp_path / "old", {"config": {"arch": "ensemble(cnn+cnn_wide)"}}))
    new = Run.open(_run(tmp_path / "new", {"config": {"arch": "ensemble", "member_archs": ["cnn", "cnn_wide"]}}))
    assert (old.arch, old.member_archs) == (new.arch, new.member_archs) == ("ensemble", ["cnn", "cnn_wide"])
    single = Run.open(_run(tmp_path / "single", {"config": {"arch": "cnn"}}))
    assert (single.arch, single.member_archs) == ("cnn", [])


def test_precision_table_names_suffixes_and_references():
    assert PRECISIONS == ("fp32", "fp16", "dynamic", "int8")
    for name in PRECISIONS:
        row = get_precision(name)
        assert split_stem(row.file_name("model")[: -len(".tflite")]) == ("model", row)
    assert split_stem("model") == ("model", None)
    assert [p for p in PRECISIONS if BY_NAME[p].needs_calibration] == ["int8"]
    assert get_precision("fp32").reference is None and {BY_NAME[p].reference for p in PRECISIONS[1:]} == {"fp32"}
    assert color_of("int8") != color_of("fp32") and color_of("bf16") == "#616161"
    with pytest.raises(EdgeDetectError, match="precision 'bf16': unknown; valid are fp32, fp16, dynamic, int8"):
        get_precision("bf16")
