"""The images of ``bench --data``: a folder listed, or an archive read into memory, with the class of each."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedetect.archives import Scan, archive_kind
from edgedetect.data import default_memory_budget
from edgedetect.errors import EdgeDetectError
from edgedetect.layout import classify
from edgedetect.listing import list_folder
from edgedetect.sampling import limit_sample


@dataclass
class ImageSet:
    """The images of ``--data``: relative paths, what a worker reads (a path, or the bytes of an archive member),
    labels (1 FAKE, 0 REAL, -1 no class folder) and the seconds spent reading an archive into memory."""

    source: str
    relpaths: list[str]
    items: list
    labels: np.ndarray
    read_s: float = 0.0
    n_found: int = 0
    unreadable: list = field(default_factory=list)  # (relpath, problem): archive members and folders not read

    def __len__(self) -> int:
        return len(self.relpaths)


def load_image_set(data: str | os.PathLike, limit: int | None = None) -> ImageSet:
    """List the images of a folder (recursively) or read those of an archive (.tar.gz/.zip) into memory.

    With ``limit``, ``limit`` images are kept (:func:`edgedetect.sampling.limit_sample`: seeded, each class
    folder keeping its share); an archive is still read whole, and its read time is pro-rated.

    Raises:
        EdgeDetectError: missing path, unsupported file, or no image files in it.
    """
    path = Path(data)
    kind = archive_kind(path)
    t = time.perf_counter()
    if kind == "folder":
        entries = list_folder(path)
        relpaths, items = [e.relpath for e in entries], [str(e.path) for e in entries]
        unreadable = list(entries.skipped)
        read_s = 0.0  # workers read the files themselves, inside the timed pass
    else:
        scanned, held, budget = [], 0, default_memory_budget()
        for row in Scan(path):  # the members are held in memory for the workers: bounded like decoded arrays
            held += len(row[1] or b"")
            if held > budget:
                raise EdgeDetectError(f"{path}: its images take more than the memory budget of {budget / 2**30:.1f} "
                                      "GiB; extract the archive and pass the folder, or raise EDGEDETECT_MEMORY_BUDGET")
            scanned.append(row)
        scanned.sort(key=lambda row: row[0])
        relpaths, items = [r for r, data, _ in scanned if data is not None], [d for _, d, _ in scanned if d is not None]
        unreadable = [(r, problem) for r, data, problem in scanned if data is None]
        read_s = time.perf_counter() - t
    n_found = len(relpaths)
    if not n_found and not unreadable:
        raise EdgeDetectError(f"{path}: no image files in it; point --data at a folder or archive of images "
                              "(REAL/FAKE class folders give accuracy figures)")
    labels = np.array([-1 if (lab := classify(r)[1]) is None else lab for r in relpaths], np.int8)
    if limit is not None and limit < n_found:
        keep = limit_sample(n_found, limit, labels)
        relpaths, items, labels = [relpaths[i] for i in keep], [items[i] for i in keep], labels[keep]
        read_s *= limit / n_found  # the share of the archive's read time that the kept images cost
    return ImageSet(str(path), relpaths, items, labels, read_s, n_found, unreadable)
