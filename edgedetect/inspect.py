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
from edgedetect.archives import Scan, progress_bar
from edgedetect.errors import ImageError, printable
from edgedetect.layout import SPLITS, Layout


def _header(data: bytes) -> tuple[int, int, str, str, int | None]:
    """``(width, height, mode, format, JPEG quality or None)`` from the header alone."""
    from PIL import Image

    from edgedetect.preprocess import SUPPORTED_FORMATS, unidentified

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as img:
                quality = jpeg_quality(getattr(img, "quantization", None)) if img.format == "JPEG" else None
                return img.width, img.height, img.mode, img.format or "?", quality
        except Image.UnidentifiedImageError:  # its message names a BytesIO object, not the file
            raise ImageError(None, unidentified(data)) from None


# The IJG (libjpeg) luminance table at quality 50; every encoder that takes a "quality" scales it.
_IJG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
             14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


def jpeg_quality(tables) -> int | None:
    """The IJG quality (1-100) whose luminance table is closest to a JPEG's first table; None without tables.

    The inverse of libjpeg's scaling (``scale = 5000/q`` below 50, ``200 - 2q`` above), applied to the table's sum;
    an encoder with its own tables (cameras, some phones) gets the nearest IJG quality, an estimate.
    """
    if not tables:
        return None
    table = tables.get(0) if isinstance(tables, dict) else tables[0]
    if table is None or len(table) != 64:
        return None
    scale = 100.0 * sum(table) / sum(_IJG_LUMA)
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return int(min(100, max(1, round(quality))))


def _codec(fmt: str, quality: int | None) -> str:
    if fmt != "JPEG" or quality is None:
        return fmt
    return f"JPEG q≈{quality // 5 * 5}"


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
    per_source: dict[tuple[str, int], dict] = defaultdict(lambda: {"codecs": Counter(), "modes": Counter(), "short": []})
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
                        w, h, mode, fmt, quality = _header(data)
                    except ImageError as e:
                        problem = e.problem
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
                src = per_source[scan.path.name, label]
                src["codecs"][_codec(fmt, quality)] += 1
                src["modes"][mode] += 1
                src["short"].append(min(w, h))
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
        "by_source": _by_source(per_source),
        "confounds": confounds(per_source),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _by_source(per_source) -> dict:
    out: dict = {}
    for (source, label), st in sorted(per_source.items()):
        out.setdefault(source, {})[LABELS[label]] = {
            "images": len(st["short"]), "codecs": dict(st["codecs"].most_common()),
            "modes": dict(st["modes"].most_common()), "short_side": _spread(st["short"])}
    return out


def _describe(st: dict, top: int = 2) -> str:
    n = len(st["short"])
    parts = [f"{c} ({k:,})" for c, k in st["codecs"].most_common(top)]
    if len(st["codecs"]) > top:
        parts.append(f"{len(st['codecs']) - top} more")
    return ", ".join(parts) + f"; short side median {int(statistics.median_low(st['short']))} px of {n:,}"


def confounds(per_source) -> list[str]:
    """Warning lines for the ways REAL and FAKE differ that a model can learn instead of the generator's traces.

    Compared over all sources together (what a run trained on them sees) and within each source that has both
    classes: the codec (format and JPEG quality in steps of 5), the colour mode, and the image size.
    """
    def pooled(label):
        st = {"codecs": Counter(), "modes": Counter(), "short": []}
        for (_, lab), s in per_source.items():
            if lab == label:
                st["codecs"].update(s["codecs"])
                st["modes"].update(s["modes"])
                st["short"].extend(s["short"])
        return st

    groups = [("all sources", pooled(0), pooled(1))]
    sources = sorted({s for s, _ in per_source})
    if len(sources) > 1:
        groups += [(s, per_source[s, 0], per_source[s, 1]) for s in sources if (s, 0) in per_source and (s, 1) in per_source]
    lines = []
    for where, real, fake in groups:
        if not real["short"] or not fake["short"]:
            continue
        share = lambda st, key, c: st[key][c] / max(1, sum(st[key].values()))  # noqa: E731
        codecs = set(real["codecs"]) | set(fake["codecs"])
        gap = max(abs(share(real, "codecs", c) - share(fake, "codecs", c)) for c in codecs)
        modes = set(real["modes"]) | set(fake["modes"])
        mode_gap = max(abs(share(real, "modes", m) - share(fake, "modes", m)) for m in modes)
        r_side, f_side = statistics.median_low(real["short"]), statistics.median_low(fake["short"])
        reasons = []
        if gap >= 0.3:
            reasons.append(f"codec differs by class ({gap:.0%} of images)")
        for c in sorted(codecs):  # a codec one class never has is a label by itself, however rare
            for name, st, other in (("REAL", real, fake), ("FAKE", fake, real)):
                if share(st, "codecs", c) >= 0.05 and other["codecs"][c] == 0 and gap < 0.3:
                    reasons.append(f"{c} only in {name} ({st['codecs'][c]:,} of {len(st['short']):,})")
        if mode_gap >= 0.2:
            reasons.append(f"colour mode differs by class ({mode_gap:.0%} of images)")
        if max(r_side, f_side) >= 1.5 * min(r_side, f_side):
            reasons.append(f"size differs by class (median short side {r_side} vs {f_side} px)")
        if reasons:
            lines.append(f"{where}: {'; '.join(reasons)}: REAL: {_describe(real)} | FAKE: {_describe(fake)}; a model "
                         "can learn this instead of the generator's traces (re-encode both classes alike: `edgedetect "
                         "train --preprocess crops` does with --jpeg-prob and --webp-prob; crop instead of resizing)")
    return lines


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
    if len(report.get("by_source", {})) > 0:
        lines.append("per source and class (codec: format, JPEG quality estimated from the quantisation tables):")
        for source, classes in report["by_source"].items():
            for label, st in classes.items():
                codecs = ", ".join(f"{c} {n:,}" for c, n in list(st["codecs"].items())[:4])
                more = f", +{len(st['codecs']) - 4} more" if len(st["codecs"]) > 4 else ""
                modes = ", ".join(f"{m} {n:,}" for m, n in st["modes"].items())
                side = "/".join(str(st["short_side"][k]) for k in ("min", "median", "max"))
                lines.append(f"  {source} {label}: {st['images']:,} images; {codecs}{more}; modes {modes}; "
                             f"short side min/med/max {side}")
        for line in report["confounds"]:
            lines.append(f"warning: {line}")
        if not report["confounds"]:
            lines.append("no codec, mode or size difference between the classes large enough to warn about")
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
