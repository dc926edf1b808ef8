"""Rebuild imgs/real/ from the public-domain / CC0 photographs shipped inside scikit-image's wheel.

    pip download --no-deps scikit-image==0.26.0 -d /tmp/skimage-wheel
    python imgs/make_samples.py /tmp/skimage-wheel/scikit_image-0.26.0-*.whl

Each photo is read straight from the wheel (a zip), its longer side scaled to 512 px with Pillow's LANCZOS filter,
and saved as JPEG quality 92. Licences are in imgs/README.md.
"""

import io
import sys
import zipfile
from pathlib import Path

from PIL import Image

PHOTOS = {  # file in skimage/data -> name here
    "astronaut.png": "astronaut.jpg",
    "chelsea.png": "cat.jpg",
    "coffee.png": "coffee.jpg",
    "rocket.jpg": "rocket.jpg",
    "camera.png": "cameraman_gray.jpg",
}


def main(wheel: str) -> None:
    out = Path(__file__).parent / "real"
    out.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for src, dst in PHOTOS.items():
            img = Image.open(io.BytesIO(zf.read(f"skimage/data/{src}")))
            img.thumbnail((512, 512), Image.Resampling.LANCZOS)
            img.save(out / dst, quality=92)
            print(f"{out / dst}  {img.size[0]}x{img.size[1]} {img.mode}")


if __name__ == "__main__":
    main(sys.argv[1])
