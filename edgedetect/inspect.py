"""Inspect a dataset without decoding it: counts, image sizes, modes, formats, unreadable files and duplicates.

One pass over the folder or archive. Each file is hashed (sha256 of its bytes) and opened with Pillow, which
parses only the header, so sizes, modes and formats come cheap; a file whose header cannot be parsed is
listed as unreadable (damage past the header shows only when training decodes it). Byte-identical files
within a split inflate it; across splits they leak training images into val/test and flatter the scores.
"""

from __future__ import annotations

import hashlib
import io
import statistics
import time
import warnings
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path
from typing import Sequence

from edgedetect import LABELS
from edgedetect.data import SPLITS, Layout, Scan, progress_bar
from edgedetect.errors import ImageError, printable


def _header(data: bytes) -> tuple[int, int, str, str]:
    from PIL import Image

    from edgedetect.preprocess import SUPPORTED_FORMATS, unidentified

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as img:
                return img.width, img.height, img.mode, img.format or "?"
        except Image.UnidentifiedImageError:  # its message names a BytesIO object, not the file
            raise ImageError(unidentified(data)) from None


def _spread(values: list[int]) -> dict[str, int]:
    return {"min": min(values), "median": int(statistics.median_low(values)), "max": max(values)} if values else {}


def inspect_dataset(paths: str | Path | Sequence[str | Path], progress: bool = True, examples: int = 5) -> dict:
    """Summarise one dataset folder or archive (or several, compared as one) in one pass each; a JSON-able report.

    Several sources are inspected together so that duplicates across them show: pass a train archive and a test
    archive to check the test set for leaks. Each keeps its own layout; their paths are prefixed ``source:``.

    Keys: ``source``, ``kind``, ``images`` (image files seen), ``splits``, ``classes``, ``counts`` ({split:
    {class: readable images}}), ``folders`` (each class folder and what it maps to), ``stats`` ({split: {class:
    width/height min/median/max, modes, formats}}), ``unreadable`` ([{path, problem}]), ``unlabelled``
    ({count, examples}), ``layout_problems``, ``duplicates_within`` ({split: {groups, extra_copies,
    mixed_labels, examples}}), ``duplicates_across`` ({"a/b": {groups, files: {a: n, b: n}, mixed_labels,
    examples}}), ``seconds``.

    Raises:
        EdgeDetectError: a path is missing, not a folder or archive, or a damaged archive.
    """
    sources = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    t0 = time.perf_counter()
    scans = [Scan(path) for path in sources]  # checks every path before the long pass
    layouts = []
    sizes: dict[tuple[str, int], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    modes: dict[tuple[str, int], Counter] = defaultdict(Counter)
    formats: dict[tuple[str, int], Counter] = defaultdict(Counter)
    by_hash: dict[bytes, list[tuple[str, int, str]]] = defaultdict(list)
    unreadable: list[dict[str, str]] = []
    for scan in scans:
        prefix = f"{scan.path.name}:" if len(scans) > 1 else ""
        layout = Layout()
        layouts.append((prefix, layout))
        with progress_bar("inspecting", scan, progress) as tick:
            for relpath, data, problem in scan:
                tick()
                where = layout.add(relpath)
                if where is None:
                    continue
                split, label = where
                if problem is None and not data:
                    problem = "empty file (0 bytes)"
                if problem is None:
                    try:
                        w, h, mode, fmt = _header(data)
                    except ImageError as e:
                        problem = str(e)
                    except Exception as e:  # Pillow raises many kinds of errors on malformed headers
                        problem = f"cannot open image ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
                if problem is not None:
                    unreadable.append({"path": prefix + relpath, "problem": problem})
                    continue
                key = (split, label)
                sizes[key][0].append(w)
                sizes[key][1].append(h)
                modes[key][mode] += 1
                formats[key][fmt] += 1
                by_hash[hashlib.sha256(data).digest()].append((split, label, prefix + relpath))

    splits = [s for s in SPLITS if any(s in layout.counts_by_split() for _, layout in layouts)]
    counts = {s: dict.fromkeys(LABELS, 0) for s in splits}  # readable images: what training would get
    stats: dict[str, dict] = {}
    for (split, label), (ws, hs) in sizes.items():
        counts[split][LABELS[label]] = len(ws)
        stats.setdefault(split, {})[LABELS[label]] = {
            "width": _spread(ws), "height": _spread(hs),
            "modes": dict(modes[split, label].most_common()), "formats": dict(formats[split, label].most_common()),
        }
    stats = {s: {c: stats[s][c] for c in LABELS if c in stats[s]} for s in SPLITS if s in stats}
    return {
        "source": " + ".join(str(p) for p in sources),
        "kind": " + ".join(scan.kind for scan in scans),
        "images": sum(layout.files for _, layout in layouts),
        "splits": splits,
        "classes": list(LABELS),
        "counts": counts,
        "folders": {prefix + f: v for prefix, layout in layouts for f, v in layout.class_folders().items()},
        "stats": stats,
        "unreadable": unreadable,
        "unlabelled": {"count": sum(len(layout.unlabelled) for _, layout in layouts),
                       "examples": [prefix + p for prefix, layout in layouts for p in layout.unlabelled][:examples]},
        "layout_problems": [prefix + p for prefix, layout in layouts for p in layout.problems()],
        "duplicates_within": _within(by_hash, splits, examples),
        "duplicates_across": _across(by_hash, splits, examples),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _within(by_hash, splits: list[str], examples: int) -> dict[str, dict]:
    out = {s: {"groups": 0, "extra_copies": 0, "mixed_labels": 0, "examples": []} for s in splits}
    for entries in by_hash.values():
        per_split = defaultdict(list)
        for split, label, relpath in entries:
            per_split[split].append((label, relpath))
        for split, group in per_split.items():
            if len(group) < 2:
                continue
            row = out[split]
            row["groups"] += 1
            row["extra_copies"] += len(group) - 1
            row["mixed_labels"] += len({label for label, _ in group}) > 1  # the same bytes labelled REAL and FAKE
            if len(row["examples"]) < examples:
                row["examples"].append(sorted(p for _, p in group)[:5])
    return out


def _across(by_hash, splits: list[str], examples: int) -> dict[str, dict]:
    out = {f"{a}/{b}": {"groups": 0, "files": {a: 0, b: 0}, "mixed_labels": 0, "examples": []}
           for a, b in combinations(splits, 2)}
    for entries in by_hash.values():
        present = {split for split, _, _ in entries}
        if len(present) < 2:
            continue
        for a, b in combinations(splits, 2):
            if a in present and b in present:
                row = out[f"{a}/{b}"]
                group = [(split, label, p) for split, label, p in entries if split in (a, b)]
                row["groups"] += 1
                row["files"][a] += sum(split == a for split, _, _ in group)
                row["files"][b] += sum(split == b for split, _, _ in group)
                row["mixed_labels"] += len({label for _, label, _ in group}) > 1
                if len(row["examples"]) < examples:
                    row["examples"].append(sorted(p for _, _, p in group)[:5])
    return out


def format_report(report: dict) -> str:
    """The report as aligned plain text for a terminal."""
    lines = []
    n_unread = len(report["unreadable"])
    lines.append(f"{report['source']} ({report['kind']}): {report['images']:,} image files, "
                 f"{n_unread:,} unreadable, {report['unlabelled']['count']:,} outside class folders, "
                 f"{report['seconds']:.1f}s")
    lines.append("folders: " + ", ".join(f"{f}/ -> {v['split']} {v['class']}" for f, v in list(report["folders"].items())[:8])
                 + (f", ... ({len(report['folders'])} in all)" if len(report["folders"]) > 8 else ""))
    for problem in report["layout_problems"]:
        lines.append(f"layout problem: {problem}")
    lines.append("")
    header = ("split", "class", "images", "width min/med/max", "height min/med/max", "modes", "formats")
    rows = [header]
    for split, row in report["counts"].items():
        for label in LABELS:
            st = report["stats"].get(split, {}).get(label, {})
            spread = lambda d: "/".join(str(d[k]) for k in ("min", "median", "max")) if d else "-"
            fmt = lambda c: ", ".join(f"{k} {v:,}" if len(c) > 1 else k for k, v in c.items()) if c else "-"
            rows.append((split, label, f"{row[label]:,}", spread(st.get("width")), spread(st.get("height")),
                         fmt(st.get("modes", {})), fmt(st.get("formats", {}))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 or i > 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    lines.append("")
    for item in report["unreadable"][:10]:
        lines.append(f"unreadable: {item['path']}: {item['problem']}")
    if n_unread > 10:
        lines.append(f"unreadable: ... and {n_unread - 10:,} more (all in --json)")
    for p in report["unlabelled"]["examples"]:
        lines.append(f"outside class folders (ignored): {p}")
    lines.append("duplicates within a split (byte-identical files):")
    for split, row in report["duplicates_within"].items():
        lines.append(f"  {split}: " + (f"{row['groups']:,} groups, {row['extra_copies']:,} extra copies"
                                       + (f", {row['mixed_labels']:,} labelled both REAL and FAKE" if row["mixed_labels"] else "")
                                       if row["groups"] else "none"))
        lines.extend(f"    e.g. {' == '.join(g)}" for g in row["examples"][:3])
    lines.append("duplicates across splits (train/test leaks):")
    if not report["duplicates_across"]:
        lines.append("  only one split; nothing to compare")
    for pair, row in report["duplicates_across"].items():
        files = ", ".join(f"{n:,} in {s}" for s, n in row["files"].items())
        lines.append(f"  {pair}: " + (f"{row['groups']:,} shared images ({files})"
                                      + (f", {row['mixed_labels']:,} with different labels" if row["mixed_labels"] else "")
                                      if row["groups"] else "none"))
        lines.extend(f"    e.g. {' == '.join(g)}" for g in row["examples"][:3])
    return "\n".join(printable(line) for line in lines)  # file names with newlines or escapes stay one inert line
