"""Benchmark .tflite detectors on the interpreter alone: size, latency, throughput, accuracy, drift, robustness.

``run_bench`` is what ``edgedetect bench`` calls; it is just as usable from Python::

    from edgedetect.bench import BenchConfig, run_bench

    doc = run_bench(BenchConfig(models=["models/x_int8.tflite"], data="cifake-test/"))

(The worker processes are spawned, so a script that calls it needs the ``if __name__ == "__main__":`` guard.)

Method, per model:

* **latency**: one interpreter with ``threads`` threads, batch 1, ``warmup`` untimed invokes, then ``runs``
  invokes each timed with ``time.perf_counter``; median and p90 in ms. Only ``invoke()`` is timed.
* **throughput** (with data): ``workers`` processes (default: one per core), each with its own single-threaded
  interpreter at batch ``batch_size``, read, decode (:func:`edgedetect.preprocess.load_image`, the one
  preprocessing) and classify chunks of the data handed out on demand. Timed from handing out the first chunk
  to receiving the last result; process start-up and model loading are excluded (they happen once). For an
  archive, the time to read it into memory (pro-rated with ``limit``) is added to every model's time.
* **floor** (with data): the throughput pass without ``invoke()`` (same workers, chunks, reading, decoding and
  batching), right before and right after each model's pass; ``floor_ratio`` = the model's img/s over the faster
  of the two, so a host load that comes and goes moves both sides of the ratio alike. ``macs_per_image`` comes
  from the graph (:mod:`edgedetect.macs`); ``host.cpu_flags`` names the instructions that decide int8 speed.
* **recommendation**: the highest throughput (latency without data) among the files within ``tolerance``
  accuracy of the most accurate one.
* **accuracy** from the same pass: accuracy, precision, recall, F1 (FAKE positive) at the model's threshold, and
  ROC-AUC, over the images whose class a folder name gives (:func:`edgedetect.layout.classify`).
* **drift** vs a reference model (default: the fp32 model of the same family, ``<family>_fp32.tflite`` beside
  it): accuracy difference, label agreement and the max and mean of ``|p_fake - p_fake_reference|``.
* **perturbations** (``jpeg:Q``, ``resize:F``, ``blur:R``): the accuracy pass again with each perturbation
  applied in memory to the decoded image before the usual crop and resize.
"""

from edgedetect.bench.host import (CPU_FLAGS, INT8_DOT_FLAGS, cpu_flags, cpu_model, has_int8_dot, host_info,
                                   usable_cores)
from edgedetect.bench.images import ImageSet, load_image_set
from edgedetect.bench.latency import measure_latency
from edgedetect.bench.models import family_reference, shipped_models
from edgedetect.bench.perturb import PERTURB_HELP, Perturbation, load_perturbed, parse_perturbations
from edgedetect.bench.pool import WorkerPool
from edgedetect.bench.report import plot_bench, render, write_csv
from edgedetect.bench.run import CONTRACT_KEYS, BenchConfig, recommend, run_bench

__all__ = ["BenchConfig", "CONTRACT_KEYS", "CPU_FLAGS", "INT8_DOT_FLAGS", "ImageSet", "PERTURB_HELP",
           "Perturbation", "WorkerPool", "cpu_flags", "cpu_model", "family_reference",
           "has_int8_dot", "host_info", "load_image_set", "load_perturbed", "measure_latency", "parse_perturbations",
           "plot_bench", "recommend", "render", "run_bench", "shipped_models", "usable_cores",
           "write_csv"]
