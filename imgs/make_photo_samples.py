"""Copy the photo samples in imgs/fake/ and imgs/real/ out of the shared native-resolution sets, byte for byte.

    python imgs/make_photo_samples.py [../shared/data]

Every sample is an untouched member of its tarball (no decoding, no re-encoding); the list below names each one.
All were in the validation split of the shipped photo model's run (carved per source and class by file, seed 0),
so none was used to fit its weights; the threshold and the checkpoint were chosen on that split. Which ones: see
imgs/README.md. An existing file with other bytes is an error, never overwritten.
"""

import hashlib
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = [  # (tarball, member, file here)
    ("sdfd.tar.gz", "sdfd/FAKE/giP-62,3.jpg", "fake/5.jpg"),
    ("sd15.tar.gz", "sd15/FAKE/Paul-Cezanne.webp", "fake/sd15_grid.webp"),
    ("faces.tar.gz", "faces/FAKE/00PB1BNIE8.jpg", "fake/stylegan_face.jpg"),
    ("dreambooth.tar.gz", "dreambooth/REAL/dog6_03.jpg", "real/dreambooth_dog.jpg"),
    ("faces.tar.gz", "faces/REAL/00189.jpg", "real/ffhq_face.jpg"),
]


def main(data: Path) -> None:
    for tarball, member, dest in SAMPLES:
        with tarfile.open(data / tarball) as tar:
            blob = tar.extractfile(member).read()
        out = HERE / dest
        if out.exists() and out.read_bytes() != blob:
            sys.exit(f"{out}: exists with other bytes; move it away first")
        out.parent.mkdir(exist_ok=True)
        out.write_bytes(blob)
        print(f"{dest}  {hashlib.sha256(blob).hexdigest()}  <- {tarball}:{member}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "data")
