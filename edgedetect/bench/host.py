"""What the figures depend on: the CPU, its int8 dot-product instructions, cores, OS and versions."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgedetect import __version__
from edgedetect.interpreter import find_interpreter


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# What decides whether int8 pays: 8-bit dot-product instructions (x86 VNNI, ARM dot product). Names as in
# /proc/cpuinfo ("flags" on x86, "Features" on ARM, where asimd is NEON and asimddp its dot product).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def cpu_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The flags of :data:`CPU_FLAGS` this CPU has, in that order; None where they cannot be read (not Linux).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (default: read it).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            have = set(value.split())
            return [f for f in CPU_FLAGS if f in have]
    return None


def has_int8_dot(flags: list[str] | None) -> bool | None:
    """Whether ``flags`` include an 8-bit dot-product instruction (None: unknown)."""
    return None if flags is None else any(f in flags for f in INT8_DOT_FLAGS)


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def host_info(threads: int | None = None, workers: int | None = None, threads_per_worker: int | None = None) -> dict:
    """What the figures depend on: CPU, cores, OS, versions, load, and the threads and workers used."""
    _, package, version = find_interpreter()
    import PIL

    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cpu_flags": flags,
        "int8_dot_product": has_int8_dot(flags),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "os": platform.platform(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "interpreter": f"{package} {version}",
        "edgedetect": __version__,
        "threads": threads,
        "workers": workers,
        "threads_per_worker": threads_per_worker,
        "load_average": load,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
