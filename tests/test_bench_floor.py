"""Speed as a ratio: the decode floor measured in the same run, CPU flags, MACs per image, the recommendation."""

import pytest

from conftest import TINY_SIZE, write_image_folder
from edgedetect.bench import BenchConfig, cpu_flags, has_int8_dot, recommend, run_bench
from edgedetect.macs import model_macs

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx avx2 fma bmi2 avx512f avx512dq avx512_vnni vaes
"""
AVX2_ONLY_CPUINFO = X86_CPUINFO.replace(" avx512f avx512dq avx512_vnni", "")
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
"""
PI3_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nModel\t: Raspberry Pi 3 Model B Rev 1.2\n"


@pytest.mark.parametrize("text, flags, dot", [
    (X86_CPUINFO, ["avx2", "avx512f", "avx512_vnni"], True),
    (AVX2_ONLY_CPUINFO, ["avx2"], False),
    (ARM_CPUINFO, ["asimd", "asimddp"], True),  # "asimdhp", "asimdrdm" are other features, not NEON dot product
    (PI3_CPUINFO, ["asimd"], False),
    ("processor\t: 0\nmodel name\t: something\n", None, None),
])
def test_cpu_flags_are_parsed_from_cpuinfo(text, flags, dot):
    assert cpu_flags(text) == flags
    assert has_int8_dot(flags) is dot


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("floor") / "data", n_per_class=10, size=TINY_SIZE, fmt="jpg")


def test_floor_is_measured_in_the_same_run_and_the_ratio_is_throughput_over_it(tiny_tflite, folder):
    doc = run_bench(BenchConfig(models=[str(tiny_tflite["fp32"]), str(tiny_tflite["int8"])], data=str(folder),
                                runs=3, warmup=1, workers=1))
    (floor,) = doc["floor"]
    passes = floor["passes_ips"]
    assert floor["input_size"] == TINY_SIZE and len(passes) == 3  # before, between and after the two models
    assert floor["throughput_ips"] == max(passes) > 0
    for i, row in enumerate(doc["rows"]):
        assert row["floor_ips"] == max(passes[i], passes[i + 1])  # the faster of the passes around it
        assert row["floor_ratio"] == pytest.approx(row["throughput_ips"] / row["floor_ips"])
        assert row["macs_per_image"] == 92_168
    assert doc["host"]["cpu_flags"] == cpu_flags()
    rec = doc["recommendation"]
    assert rec["model"] in [r["model"] for r in doc["rows"]] and rec["by"] == "throughput" and rec["tolerance"] == 0.003


def test_macs_of_the_tiny_cnn_are_counted_by_hand(tiny_tflite):
    # conv 3x3x3->8 at 16x16 (same), max-pool to 8x8, conv 3x3x8->8 at 8x8, global average, dense 8->1
    by_hand = 16 * 16 * 8 * (3 * 3 * 3) + 8 * 8 * 8 * (3 * 3 * 8) + 8 * 1
    assert model_macs(tiny_tflite["fp32"]) == by_hand == 92_168
    assert model_macs(tiny_tflite["int8"]) == by_hand  # quantization does not change the work, only its type


def test_macs_of_a_depthwise_conv_are_counted_by_hand(tmp_path):
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    inputs = keras.Input((8, 8, 4))
    h = keras.layers.DepthwiseConv2D(3, padding="valid")(inputs)  # 6x6x4 outputs, 9 MACs each
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(h))  # 144 -> 2
    path = tmp_path / "dw.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert())
    assert model_macs(path) == 6 * 6 * 4 * 9 + 144 * 2


def _row(name, accuracy, ips, latency=0.1):
    return {"model": name, "accuracy": accuracy, "throughput_ips": ips, "floor_ratio": None if ips is None else ips / 1e4,
            "latency_ms_p50": latency}


def test_recommendation_is_the_fastest_within_the_tolerance_of_the_most_accurate():
    rows = [_row("best", 0.9784, 13_000), _row("close", 0.9760, 18_000), _row("fast_but_worse", 0.9700, 25_000)]
    rec = recommend(rows, 0.003)
    assert (rec["model"], rec["most_accurate"], rec["best_accuracy"]) == ("close", "best", 0.9784)
    assert recommend(rows, 0.0)["model"] == "best"
    assert recommend(rows, 0.01)["model"] == "fast_but_worse"


def test_without_data_the_recommendation_is_the_lowest_latency():
    rows = [_row("a", None, None, 0.2), _row("b", None, None, 0.05)]
    assert recommend(rows, 0.003)["model"] == "b" and recommend(rows, 0.003)["by"] == "latency"
    assert recommend([], 0.003) is None


def test_cli_prints_the_ratio_the_flags_and_the_file_to_use(cli, tiny_tflite, folder):
    code, out, err = cli("bench", tiny_tflite["int8"], tiny_tflite["fp32"], "--data", folder,
                           "--runs", "3", "--workers", "1", "--tolerance", "100")
    assert code == 0, err
    assert "× floor" in out and "cpu flags: " in out and "floor: " in out
    assert "use on this host: tiny_" in out and "within 100 points of the most accurate" in out
