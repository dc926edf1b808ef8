"""False alarms on real images no model here was trained on: the wallpapers of Debian's desktop packages.

Debian's desktop packages hold a few hundred images made by people without an image generator: photographs
(the Ubuntu wallpaper contests of 2016 and 2020 in ``lomiri-wallpapers-*``, MATE's nature set) and digital art
(rendered, painted or drawn: GNOME, KDE Plasma, MATE, sway; scanned paper textures in ``mypaint-data-extras``), as
PNG, JPEG and WebP at up to 5120 px. None is in ``../shared/data``, none was used to train or to set a threshold,
so every FAKE call on them is a false alarm. The script fetches the packages with ``apt-get download`` (the Debian
mirror is the only network it needs), unpacks them with ``dpkg-deb`` into a cache folder, and scores every image
with each model, as ``edgedetect predict`` does::

    python benchmarks/real_wallpapers.py models/photo_npr96_int8.tflite

Prints, per package and model, the number of images, the share called FAKE at the model's threshold and the median
p_fake, then the images called FAKE; ``--json FILE`` keeps every score. Licences: each package's
``usr/share/doc/<package>/copyright`` in the cache. Some KDE wallpapers ship at two or three sizes (each
counted; the many more sizes that are links to one file are counted once).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedetect.errors import EdgeDetectError  # noqa: E402
from edgedetect.files import atomic_write_text  # noqa: E402
from edgedetect.predict import predict_files  # noqa: E402
from edgedetect.runtime import Classifier  # noqa: E402

# package -> what it holds (all REAL: made without an image generator)
PACKAGES = {
    "lomiri-wallpapers-16.04": "photographs (Ubuntu wallpaper contest)",
    "lomiri-wallpapers-20.04": "photographs and digital art (Ubuntu wallpaper contest)",
    "mate-backgrounds": "photographs (nature) and digital art",
    "gnome-backgrounds": "digital art (rendered), WebP",
    "plasma-workspace-wallpapers": "digital art (KDE), several sizes of each",
    "sway-backgrounds": "digital art (flat)",
    "mypaint-data-extras": "scanned paper and canvas textures",
}
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
DEFAULT_CACHE = Path.home() / ".cache" / "edgedetect" / "debian-wallpapers"


def fetch(package: str, cache: Path) -> Path:
    """The unpacked package folder in ``cache``, downloading and unpacking it the first time."""
    root = cache / package
    if root.is_dir():
        return root
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise EdgeDetectError(f"{tool} not found: this script needs a Debian-like system to fetch {package}")
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise EdgeDetectError(f"apt-get download {package} failed: {said[-1] if said else f'exit status {done.returncode}'}")
    partial = cache / f".{package}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(partial)], check=True)
    partial.rename(root)
    return root


def images_of(root: Path) -> list[Path]:
    """The package's pictures: plain files only (KDE links one file under many sizes' names), thumbnails named
    screenshot.* left out."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and not p.stem.startswith("screenshot")
                  and p.is_file() and not p.is_symlink())


def scores(model: Classifier, files: list[Path]) -> dict[Path, float]:
    """p_fake of every readable file, by :func:`edgedetect.predict.predict_files` (what ``edgedetect predict``
    runs); a file that cannot be read is left out with a line on stderr."""
    out = {}
    for r in predict_files(model, [str(f) for f in files]):
        if r["error"]:
            print(f"skipped: {r['path']}: {r['error']}", file=sys.stderr)
        else:
            out[Path(r["path"])] = r["p_fake"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help=".tflite files to score")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"where packages are kept [{DEFAULT_CACHE}]")
    parser.add_argument("--json", type=Path, help="also write every score here")
    args = parser.parse_args()
    try:
        files = {pkg: images_of(fetch(pkg, args.cache)) for pkg in PACKAGES}
    except EdgeDetectError as e:
        sys.exit(f"error: {e}")
    doc = {"packages": {pkg: {"content": PACKAGES[pkg], "n": len(f)} for pkg, f in files.items()}, "models": {}}
    for path in args.models:
        model = Classifier(path, threads=None)
        t = model.threshold
        by_package = {pkg: {str(f.relative_to(args.cache / pkg)): p for f, p in scores(model, fs).items()}
                      for pkg, fs in files.items()}
        doc["models"][str(path)] = {"threshold": t, "scores": by_package}
        every = np.array([p for s in by_package.values() for p in s.values()])
        print(f"\n{path} (threshold {t:.3f}): {np.mean(every >= t):.1%} of {len(every)} real images called FAKE")
        print("\n| package | content | n | called FAKE | median p_fake |\n|---|---|---:|---:|---:|")
        for pkg, s in by_package.items():
            p = np.array(list(s.values()))
            print(f"| {pkg} | {PACKAGES[pkg]} | {len(p)} | {np.mean(p >= t):.2f} | {np.median(p):.2f} |")
        flagged = sorted(((p, f"{pkg}/{f}") for pkg, s in by_package.items() for f, p in s.items() if p >= t),
                         reverse=True)
        print("\ncalled FAKE:\n" + "\n".join(f"  {p:.3f}  {name}" for p, name in flagged))
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
