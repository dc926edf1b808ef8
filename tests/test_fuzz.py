"""Fuzzing the image-loading path: mutated JPEG, PNG, GIF, WebP, BMP and TIFF files either load as a (32, 32, 3)
uint8 array or raise ImageError; any other exception is a bug. Seeded (numpy), so a failure names a case that
reproduces: ``mutate(SEEDS[fmt], np.random.default_rng([SEED, index of fmt, case]))``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgedetect.errors import ImageError
from edgedetect.preprocess import _decode_plain_jpeg, _to_rgb, load_image

SEED = 7
CASES_PER_FORMAT = 1000


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 20, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [rgb.convert("P"), rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("P")]
    return {
        "jpeg_baseline": _encode(rgb, "JPEG", quality=90),  # the fast path's kind of file
        "jpeg_progressive": _encode(rgb, "JPEG", progressive=True),
        "jpeg_exif": _encode(rgb, "JPEG", exif=exif),  # the general path, with an orientation to apply
        "jpeg_cmyk": _encode(rgb.convert("CMYK"), "JPEG"),
        "png": _encode(rgb, "PNG"),
        "png_palette_alpha": _encode(rgb.convert("P"), "PNG", transparency=3),
        "png_16bit": _encode(Image.fromarray(rng.integers(0, 65536, (20, 24), np.uint16)), "PNG"),
        "gif_animated": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40),
        "webp": _encode(rgb, "WEBP", quality=80),
        "webp_lossless": _encode(rgb.convert("RGBA"), "WEBP", lossless=True),
        "bmp": _encode(rgb, "BMP"),
        "tiff": _encode(rgb, "TIFF"),
        "tiff_lzw": _encode(rgb, "TIFF", compression="tiff_lzw"),
    }


SEEDS = _seeds()


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One to three random edits (byte set, bit flip, truncation, insertion, deletion, duplication), half of
    them aimed at the first 64 bytes where the headers are; returns the mutant and what was done."""
    d = bytearray(data)
    done = []
    for _ in range(int(rng.integers(1, 4))):
        if not d:
            break
        span = min(len(d), 64) if rng.random() < 0.5 else len(d)
        i = int(rng.integers(0, span))
        n = int(rng.integers(1, 9))
        kind = ("set", "flip", "truncate", "insert", "delete", "duplicate")[int(rng.integers(0, 6))]
        if kind == "set":
            d[i] = int(rng.integers(0, 256))
        elif kind == "flip":
            d[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == "truncate":
            del d[int(rng.integers(0, len(d))):]
        elif kind == "insert":
            d[i:i] = rng.integers(0, 256, n, np.uint8).tobytes()
        elif kind == "delete":
            del d[i : i + n]
        else:
            d[i:i] = d[i : i + n]
        done.append(f"{kind}@{i}")
    return bytes(d), ",".join(done)


def test_seeds_are_valid_images():
    for fmt, data in SEEDS.items():
        assert load_image(data, 32).shape == (32, 32, 3), fmt


def test_mutated_images_load_or_raise_image_error():
    failures, loaded, total = [], 0, 0
    for f, (fmt, data) in enumerate(SEEDS.items()):
        for case in range(CASES_PER_FORMAT):
            mutant, how = mutate(data, np.random.default_rng([SEED, f, case]))
            total += 1
            try:
                out = load_image(mutant, 32)
            except ImageError as e:
                assert str(e).startswith("<bytes>: ") and "\n" not in str(e), str(e)
                continue
            except Exception as e:  # noqa: BLE001 - exactly what the test looks for
                failures.append(f"{fmt} case {case} ({how}): {type(e).__name__}: {e}")
                continue
            if out.shape != (32, 32, 3) or out.dtype != np.uint8:
                failures.append(f"{fmt} case {case} ({how}): returned {out.dtype} {out.shape}")
            loaded += 1
    assert not failures, f"{len(failures)} of {total} cases (seed {SEED}):\n" + "\n".join(failures[:20])
    # both outcomes happen, so the mutations neither all break the files nor leave them all intact
    assert 0.1 * total < loaded < 0.9 * total, (loaded, total)


def test_fast_jpeg_path_gives_the_general_paths_pixels_on_mutated_files():
    """Mutants the fast path takes must decode exactly as Pillow's general path decodes them (or it rejects them)."""
    data = SEEDS["jpeg_baseline"]
    fast_taken = 0
    for case in range(CASES_PER_FORMAT * 2):
        mutant, how = mutate(data, np.random.default_rng([SEED, 99, case]))
        fast = _decode_plain_jpeg(mutant)
        if fast is None:
            continue
        fast_taken += 1
        try:
            general = Image.open(io.BytesIO(mutant))
            general.load()
            general = _to_rgb(general)
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"case {case} ({how}): the fast path decoded what the general path rejects ({e!r})")
        assert general.size == fast.size, (case, how)
        np.testing.assert_array_equal(np.asarray(fast), np.asarray(general), err_msg=f"case {case} ({how})")
    assert fast_taken >= CASES_PER_FORMAT // 4, fast_taken  # the fuzz really exercises the fast path
