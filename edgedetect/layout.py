"""What a dataset's folder names say: the class (REAL/FAKE) and split (train/val/test) of every image.

Recognised layouts (folder names are case-insensitive):

* class folders ``REAL|real|0|nature`` -> REAL and ``FAKE|fake|1|ai`` -> FAKE
  (CIFAKE ``train/REAL``, the faces set ``train/0``, GenImage ``train/nature`` / ``train/ai``, your own ``REAL``/``FAKE``);
* optional split folders ``train``, ``val|valid|validate|validation``, ``test`` above (or below) them.
  Images in bare class folders are training data.

Anything ambiguous is an error that shows what was found: a path under both a REAL and a FAKE folder, or under
two split folders, or images both inside and outside split folders.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path, PurePosixPath

from edgedetect import LABELS
from edgedetect.archives import Scan, archive_kind
from edgedetect.errors import EdgeDetectError
from edgedetect.listing import IMAGE_SUFFIXES, list_folder

CLASS_FOLDERS = {"real": 0, "0": 0, "nature": 0, "fake": 1, "1": 1, "ai": 1}
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
}
SPLITS = ("train", "val", "test")
NO_SPLIT = "train"  # images in bare class folders count as training data


def _folder_info(parent: str) -> tuple[str | None, int | None, str | None]:
    """``(split, label, problem)`` for a folder path; ``problem`` says why it is ambiguous."""
    parts = PurePosixPath(parent).parts
    classes = [p for p in parts if p.lower() in CLASS_FOLDERS]
    splits = [p for p in parts if p.lower() in SPLIT_FOLDERS]
    labels = {CLASS_FOLDERS[p.lower()] for p in classes}
    split_names = {SPLIT_FOLDERS[p.lower()] for p in splits}
    if len(labels) > 1:
        return None, None, f"{parent}/ is under both a REAL and a FAKE folder ({', '.join(classes)})"
    if len(split_names) > 1:
        return None, None, f"{parent}/ is under more than one split folder ({', '.join(splits)})"
    if not labels:
        return None, None, None
    return (split_names.pop() if split_names else None), labels.pop(), None


def classify(relpath: str) -> tuple[str | None, int | None]:
    """``(split, label)`` of an image from the folder names in its path; ``None`` where none is recognised.

    The class comes from a class folder anywhere in the path, the split from a split folder anywhere in it;
    a path with two different classes or splits is ambiguous and gives ``(None, None)``.
    """
    split, label, _ = _folder_info(str(PurePosixPath(relpath).parent))
    return split, label


class Layout:
    """Classifies file paths one by one and collects what makes a layout unusable or ambiguous."""

    def __init__(self) -> None:
        self.folders: dict[str, tuple[str | None, int | None, str | None]] = {}
        self.counts: Counter[str] = Counter()  # folder -> files
        self.unlabelled: list[str] = []
        self.files = 0

    def add(self, relpath: str) -> tuple[str, int] | None:
        """``(split, label)`` for a usable image (split defaulting to train); ``None`` when it has no class."""
        self.files += 1
        parent = relpath.rpartition("/")[0] or "."
        info = self.folders.get(parent)
        if info is None:
            info = self.folders[parent] = _folder_info(parent)
        self.counts[parent] += 1
        split, label, problem = info
        if label is None:
            if problem is None:
                self.unlabelled.append(relpath)
            return None
        return split or NO_SPLIT, label

    def class_folders(self) -> dict[str, dict]:
        """``{folder: {"split", "class", "files"}}`` for every folder that holds labelled images."""
        return {
            folder: {"split": split or NO_SPLIT, "class": LABELS[label], "files": self.counts[folder]}
            for folder, (split, label, _) in sorted(self.folders.items())
            if label is not None
        }

    def counts_by_split(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for info in self.class_folders().values():
            row = out.setdefault(info["split"], dict.fromkeys(LABELS, 0))
            row[info["class"]] += info["files"]
        return {s: out[s] for s in SPLITS if s in out}

    def problems(self) -> list[str]:
        """Why the layout is ambiguous, one sentence each (empty when it is fine)."""
        out = [problem for _, _, problem in self.folders.values() if problem]
        inside = {f: n for f, n in self.counts.items() if self.folders[f][1] is not None and self.folders[f][0]}
        outside = {f: n for f, n in self.counts.items() if self.folders[f][1] is not None and not self.folders[f][0]}
        if inside and outside:
            show = lambda d: ", ".join(f"{f}/ ({n})" for f, n in sorted(d.items())[:4]) + (", ..." if len(d) > 4 else "")
            out.append(f"images both inside split folders ({show(inside)}) and outside them ({show(outside)}); "
                       "move the loose ones into a split folder (e.g. train/) or remove them")
        return sorted(out)

    def check(self, source: Path | str) -> None:
        """Raise EdgeDetectError when there are no images, no class folders, an ambiguity, or a one-class split."""
        if self.files == 0:
            raise EdgeDetectError(
                f"{source}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                "point at the folder or archive that holds the images"
            )
        problems = self.problems()
        if problems:
            raise EdgeDetectError(
                f"{source}: ambiguous layout: {'; '.join(problems[:5])}"
                + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                + ". Each image must sit under exactly one class folder (REAL|real|0|nature or FAKE|fake|1|ai) "
                "and at most one split folder (train|val|valid|validate|validation|test)."
            )
        counts = self.counts_by_split()
        if not counts:
            found = ", ".join(sorted({str(PurePosixPath(p).parent) + "/" for p in self.unlabelled})[:8])
            raise EdgeDetectError(
                f"{source}: no class folders found (found: {found}). Put images in REAL/FAKE (or real/fake, 0/1, "
                "nature/ai) folders, optionally under train/val/test."
            )
        check_two_classes(source, counts)


def check_two_classes(source, counts: dict[str, dict[str, int]]) -> None:
    for name, row in counts.items():
        if min(row.values()) == 0:
            raise EdgeDetectError(
                f"{source}: split '{name}' has only one class ({row}); a detector needs both REAL and FAKE images."
            )


def scan_layout(path: str | os.PathLike) -> Layout:
    """Classify a dataset's files by name only (no decoding); for folders this costs a directory listing."""
    layout = Layout()
    path = Path(path)
    if archive_kind(path) == "folder":
        for f in list_folder(path):
            layout.add(f.relpath)
    else:
        for relpath, _, _ in Scan(path):
            layout.add(relpath)
    return layout
