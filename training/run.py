"""A training run folder, read and written through one object.

A run folder holds::

    best.keras      best model by validation AUC, without training state
    last.keras      last epoch, with optimizer state (what resuming continues from)
    teacher.npy     with a teacher: its p_fake on every training image
    state.json      epoch, best AUC, epochs without improvement, training seconds
    config.json     {"config": settings, "dataset": ..., "versions": ..., "device": ..., "command": [...], ...}
    history.json    per-epoch train/val loss, accuracy, AUC and learning rate
    metrics.json    the best model on val (and test) with the threshold chosen on val
    curves.png      loss, accuracy and AUC curves

and ``<runs>/latest.json`` names the newest run. Training writes a run; conversion, evaluation, ensembling and the
benchmark scripts read it here. A file that is missing where it must be, or that is not valid JSON, is one
``EdgeDetectError`` naming the folder and the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from edgedetect.errors import EdgeDetectError
from edgedetect.files import atomic_write_text

RUNS_DIR = Path("runs")
LATEST = "latest.json"
CONFIG, METRICS, STATE, HISTORY = "config.json", "metrics.json", "state.json", "history.json"
BEST, LAST = "best.keras", "last.keras"
# An ensemble's "arch" (its members' registry names are in "member_archs"). Ensembles made before that field
# existed say "ensemble(cnn+cnn)"; Run reads both.
ENSEMBLE_ARCH = "ensemble"


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``; an EdgeDetectError naming the file when it is unreadable or not an object."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise EdgeDetectError(f"{path}: cannot read this run file ({e.strerror or e})") from None
    except ValueError as e:
        raise EdgeDetectError(f"{path}: corrupt run file, not valid JSON ({e}); repair or delete it") from None
    if not isinstance(doc, dict):
        raise EdgeDetectError(f"{path}: corrupt run file, expected a JSON object, found {type(doc).__name__}")
    return doc


class Run:
    """One training run folder: its settings, dataset summary, metrics and threshold.

    Attributes:
        path: the run folder.
        config: the whole ``config.json`` document (empty when the folder has none).
        metrics: ``metrics.json`` (empty while the run is unfinished).
    """

    def __init__(self, path: str | os.PathLike, config: Optional[dict] = None, metrics: Optional[dict] = None):
        self.path = Path(path)
        self.config = config or {}
        self.metrics = metrics or {}

    # ------------------------------------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike, need_model: bool = False) -> "Run":
        """The run in the folder ``path``, or the folder holding the model file ``path``.

        Args:
            need_model: also require its ``best.keras`` (a finished run to ensemble or convert).

        Raises:
            EdgeDetectError: no config.json (or best.keras) there, or a corrupt run file.
        """
        given = Path(path)
        folder = given if given.is_dir() else given.parent
        for name in (BEST, CONFIG) if need_model else (CONFIG,):
            if not (folder / name).is_file():
                raise EdgeDetectError(f"{given}: not a training run (no {name} in {folder}); "
                                      "name run folders made by `edgedetect train`")
        return cls._load(folder)

    @classmethod
    def around(cls, model: str | os.PathLike) -> Optional["Run"]:
        """The run a ``.keras`` file sits in (its folder has config.json or metrics.json), else None.

        Raises:
            EdgeDetectError: a run file there is corrupt.
        """
        model = Path(model)
        folder = model.parent
        if model.suffix.lower() != ".keras" or not any((folder / n).is_file() for n in (CONFIG, METRICS)):
            return None
        return cls._load(folder)

    @classmethod
    def latest(cls, root: str | os.PathLike = RUNS_DIR) -> "Run":
        """The run ``<root>/latest.json`` points at.

        Raises:
            EdgeDetectError: no pointer, a corrupt one, or one naming a folder without best.keras.
        """
        pointer = Path(root) / LATEST
        if not pointer.is_file():
            raise EdgeDetectError(f"no training run found ({pointer} is missing); train one with `edgedetect train` "
                                  "or name a model file")
        run_dir = _read_json(pointer).get("run_dir")
        if not isinstance(run_dir, str):
            raise EdgeDetectError(f"{pointer}: corrupt run pointer (no \"run_dir\"); train again or name a model file")
        if not (Path(run_dir) / BEST).is_file():
            raise EdgeDetectError(f"{pointer} points at {run_dir}, which has no best.keras; name a model file instead")
        return cls._load(Path(run_dir))

    @classmethod
    def _load(cls, folder: Path) -> "Run":
        config = _read_json(folder / CONFIG) if (folder / CONFIG).is_file() else {}
        metrics = _read_json(folder / METRICS) if (folder / METRICS).is_file() else {}
        return cls(folder, config, metrics)

    # ------------------------------------------------------------------------------------------------ reading

    @property
    def settings(self) -> dict:
        """The training settings (``TrainConfig`` as a dict)."""
        settings = self.config.get("config")
        return settings if isinstance(settings, dict) else {}

    @property
    def arch(self) -> Optional[str]:
        """The registry name of the architecture (``"ensemble"`` for an ensemble)."""
        arch = self.settings.get("arch")
        return ENSEMBLE_ARCH if isinstance(arch, str) and arch.startswith(ENSEMBLE_ARCH + "(") else arch

    @property
    def member_archs(self) -> list:
        """An ensemble's members' architectures (empty for a single model)."""
        arch = self.settings.get("arch")
        if isinstance(arch, str) and arch.startswith(ENSEMBLE_ARCH + "(") and arch.endswith(")"):
            return arch[len(ENSEMBLE_ARCH) + 1 : -1].split("+")  # the old form, "ensemble(cnn+cnn)"
        return list(self.settings.get("member_archs", []))

    @property
    def best_model(self) -> Path:
        return self.path / BEST

    @property
    def threshold(self) -> Optional[float]:
        """The decision threshold chosen on val during training (None while the run has no metrics)."""
        value = self.metrics.get("threshold")
        return None if value is None else float(value)

    @property
    def threshold_source(self) -> str:
        return f"training run {self.path / METRICS} ({self.metrics.get('threshold_method', 'chosen on val')})"

    def data_path(self) -> Optional[Path]:
        """The training data as found from here (as given, else relative to the folder above ``runs/``), or None."""
        data = self.settings.get("data")
        if not data or not isinstance(data, str):
            return None
        for candidate in (Path(data), self.path.parent.parent / data):
            if candidate.exists():
                return candidate
        return None

    def labelled_metrics(self) -> dict:
        """The run's metrics, each split labelled with its dataset and split (for a model's metadata)."""
        m, data = self.metrics, self.settings.get("data")
        if not m:
            return {}
        carved = self.config.get("dataset", {}).get("val") == "carved from train"
        val_kind = "val (carved from train)" if carved else "val"
        out = {"measured_on": "the Keras source model, before conversion", "threshold": m.get("threshold"),
               "threshold_method": m.get("threshold_method")}
        for key, split in (("val", val_kind), ("val_at_0.5", f"{val_kind}, threshold 0.5"), ("test", "test")):
            if key in m:
                out[key] = {"dataset": data, "split": split, **m[key]}
        return out

    def read(self, name: str) -> dict:
        """Another JSON file of the run (``state.json``, ``history.json``)."""
        return _read_json(self.path / name)

    # ------------------------------------------------------------------------------------------------ writing

    def write(self, name: str, doc: dict) -> None:
        """Write a JSON file of the run atomically (config.json and metrics.json also update this object)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / name, json.dumps(doc, indent=1))
        if name == CONFIG:
            self.config = doc
        elif name == METRICS:
            self.metrics = doc

    def point_latest(self) -> None:
        """Make ``<parent>/latest.json`` name this run."""
        atomic_write_text(self.path.parent / LATEST, json.dumps({"run_dir": str(self.path.resolve())}) + "\n")


def library_versions() -> dict:
    """Python, Keras (and its backend), numpy, TensorFlow when loaded, and the platform: a run's provenance."""
    import platform
    import sys

    import keras
    import numpy as np

    versions = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
                "numpy": np.__version__, "platform": platform.platform()}
    if "tensorflow" in sys.modules:
        versions["tensorflow"] = sys.modules["tensorflow"].__version__
    return versions
