"""The one preprocessing used by every stage: file or bytes -> RGB uint8 array of shape (size, size, 3).

Training, calibration, evaluation, predict and bench all call :func:`load_image` (or :func:`open_image`
followed by :func:`to_array`), so a model never sees pixels prepared two different ways.

The steps are fixed:

1. Decode with Pillow (first frame of an animated file). Pillow's decompression-bomb guard stays on; an
   image over ``PIL.Image.MAX_IMAGE_PIXELS`` is reported as too large.
2. Apply the EXIF orientation tag, so the pixels are the way a viewer shows them.
3. Convert to 8-bit RGB: grayscale, palette and CMYK through Pillow; 16-bit and 32-bit integer images
   scaled down to 8 bits; alpha composited over white.
4. Centre-crop to a square, then resize to ``size`` x ``size`` with Pillow's bilinear filter (which
   antialiases when it shrinks). An image that is already ``size`` x ``size`` is left untouched.

Normalisation is *not* done here: every exported model takes raw RGB 0-255 and normalises in its graph.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from edgedetect.errors import ImageError

Source = Union[str, os.PathLike, bytes]

RESAMPLE = Image.Resampling.BILINEAR
# The only decoders untrusted files reach. Pillow would hand others to external programs (EPS to Ghostscript) or
# to little-used parsers; a file in another format is "not a supported image".
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
SUPPORTED_NAMES = "JPEG, PNG, WebP, BMP, GIF, TIFF"
MAX_IMAGE_BYTES = 512 << 20  # an image file is read whole; larger files are refused before reading
_EXIF_ORIENTATION = 0x0112

# Written into every model's metadata so a model says how its inputs were made.
PREPROCESSING = {
    "color": "RGB",
    "dtype": "uint8",
    "range": [0, 255],
    "layout": "NHWC",
    "resize": "centre-crop to square, then Pillow bilinear resize (antialiased) to input size",
    "exif_orientation": "applied",
    "alpha": "composited over white",
    "normalisation": "inside the model graph",
}


def _name(source: Source) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


# Non-blocking, so that opening a named pipe returns at once (and is then refused) instead of waiting for a writer.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def _read_regular_file(path: str | os.PathLike) -> bytes | None:
    """The bytes of a regular file with one open/fstat/read (a third of Path.read_bytes' cost on tiny files);
    None when it is not one or cannot be opened, so the caller works out the exact problem."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        if size > MAX_IMAGE_BYTES:  # checked before reading: a sparse 30 GB file would fill memory
            raise ImageError(path, too_large(size))
        data = os.read(fd, size + 1)  # one byte more: a file that grew since fstat is read to its end below
        if len(data) == size:
            return data
        parts = [data]  # grew, or a short read (one read() returns at most ~2 GiB on Linux): read to the end
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_IMAGE_BYTES:
                raise ImageError(path, too_large(size))
        return b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)


def too_large(size: int) -> str:
    """The problem of a file or archive member of ``size`` bytes over :data:`MAX_IMAGE_BYTES`."""
    shown = f"{size / 2**30:,.1f} GiB" if size >= 1 << 30 else f"{size / 2**20:,.0f} MiB"
    return f"file too large ({shown}; image files over {MAX_IMAGE_BYTES >> 20} MiB are refused)"


def _read_bytes(source: Source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    data = _read_regular_file(source)
    if data is not None:
        return data
    path = Path(source)
    try:
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            # A pipe would block the read forever and a device (/dev/zero) never end it.
            raise ImageError(path, "not a regular file (a pipe, socket or device); pass image files")
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ImageError(path, too_large(path.stat().st_size))
        return path.read_bytes()
    except FileNotFoundError:
        problem = "broken symlink" if path.is_symlink() else "file not found"
    except IsADirectoryError:
        problem = "is a directory, not an image"
    except PermissionError:
        problem = "permission denied"
    except OSError as e:
        problem = f"cannot read file ({e.strerror or e})"
    raise ImageError(path, problem)


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of an image file, refused as :func:`load_image` refuses it (ImageError: missing, a pipe or
    device, unreadable, over :data:`MAX_IMAGE_BYTES`)."""
    return _read_bytes(path)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        finite = arr if arr.dtype.kind in "iu" else np.where(np.isfinite(arr), arr, 0)  # NaN/inf pixels count as 0
        scale = 257.0 if mode.startswith("I;16") or finite.max(initial=0) > 255 else 1.0  # 0..65535 onto 0..255
        out = np.empty(arr.shape, np.uint8)
        rows = max(1, (1 << 18) // max(1, arr.shape[1]))  # 2 MB of float64 at a time, not copies of the whole image
        for top in range(0, arr.shape[0], rows):
            part = finite[top : top + rows].astype(np.float64)
            part /= scale
            np.rint(part, out=part)
            out[top : top + rows] = np.clip(part, 0, 255, out=part)
        del arr, finite, part  # freed before the RGB copy is made
        return Image.fromarray(out, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


# Start-of-frame markers of Huffman-coded 8-bit JPEGs (baseline, extended, progressive) that the fast path takes.
_PLAIN_SOF = (0xC0, 0xC1, 0xC2)


def _plain_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a 3-channel 8-bit JPEG that has nothing but pixels to apply, else None.

    Nothing to apply means: no APP1 segment (EXIF or XMP could carry an orientation), no MPF (multi-picture)
    segment, one start-of-frame of a kind Pillow decodes to RGB. Anything else goes through ``Image.open``.
    """
    if data[:2] != b"\xff\xd8":
        return None
    size, i, n = None, 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            return size
        length = (data[i + 2] << 8) | data[i + 3]
        segment = data[i + 4 : i + 2 + length]
        if marker in _PLAIN_SOF:
            if size is not None or len(segment) < 6 or segment[0] != 8 or segment[5] != 3:
                return None
            size = ((segment[3] << 8) | segment[4], (segment[1] << 8) | segment[2])
        elif marker == 0xE1 or (marker == 0xE2 and segment.startswith(b"MPF")):
            return None
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # lossless/arithmetic/other frames
            return None
        i += 2 + length
    return None


def _decode_plain_jpeg(data: bytes) -> Image.Image | None:
    """Decode a plain JPEG (see :func:`_plain_jpeg_size`) straight with Pillow's libjpeg decoder, or None.

    Same decoder and arguments as ``Image.open(...).load()`` uses for such a file, so the pixels are identical
    (a test holds them so); it skips Pillow's Python-level header parsing, which costs more than decoding a
    32x32 JPEG (15k -> 26k images/s per core on CIFAKE). Any failure returns None and the general path reports it.
    """
    size = _plain_jpeg_size(data)
    if size is None or not 0 < size[0] * size[1] <= (Image.MAX_IMAGE_PIXELS or float("inf")):
        return None
    try:
        return Image.frombytes("RGB", size, data, "jpeg", "RGB", "")
    except (ValueError, OSError):
        return None


# Magic numbers, to tell a damaged image (e.g. a download cut short inside its header) from a file that is none.
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"))


def _signature(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


def _other_format(data: bytes) -> str | None:
    """The name of a file format Pillow knows but edgedetect does not decode, from its first bytes only."""
    if data.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "PostScript"
    if data.startswith(b"%PDF"):
        return "PDF"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIF/AVIF"
    Image.init()
    prefix = data[:16]
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        try:
            if fmt not in SUPPORTED_FORMATS and accept is not None and accept(prefix):
                return fmt
        except Exception:  # noqa: BLE001 -- a plugin's header test that fails on odd bytes names nothing
            continue
    return None


def unidentified(data: bytes) -> str:
    """The problem of bytes that no allowed decoder opens: a damaged image, another format, or no image."""
    kind = _signature(data)
    if kind:
        return f"starts like a {kind} file but its header is truncated or corrupt"
    other = _other_format(data)
    if other:
        return f"not a supported image ({other}); supported: {SUPPORTED_NAMES}"
    return "not an image file Pillow can read"


def open_image(source: Source) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) into an upright 8-bit RGB Pillow image.

    Raises:
        ImageError: the file is missing, unreadable, not an image, truncated, or too large.
    """
    data = _read_bytes(source)
    if not data:
        raise ImageError(_name(source), "empty file (0 bytes)")
    fast = _decode_plain_jpeg(data)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Pillow warns (without naming the file) about damaged metadata such as corrupt EXIF; the pixels
            # decode, so the image is classified rather than the output cluttered.
            warnings.simplefilter("ignore", UserWarning)
            img = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
            img.load()
            if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(_name(source), f"image too large, refused as a possible decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(_name(source), unidentified(data)) from None
    except Exception as e:  # Pillow's decoders raise many kinds of errors on malformed data.
        detail = str(e) or type(e).__name__
        if "truncated" in detail.lower():
            detail = "truncated image data"
        raise ImageError(_name(source), f"cannot decode image ({detail})") from None


def to_array(img: Image.Image, size: int) -> np.ndarray:
    """Centre-crop ``img`` (RGB) to a square and resize it to ``size`` x ``size``; returns uint8 (size, size, 3)."""
    w, h = img.size
    if (w, h) != (size, size):
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.resize((size, size), RESAMPLE, box=(left, top, left + side, top + side))
    return np.asarray(img, dtype=np.uint8)


def load_image(source: Source, size: int) -> np.ndarray:
    """File path or bytes -> RGB uint8 array of shape (size, size, 3), the input every model takes.

    Raises:
        ImageError: with one line naming the file and the problem.
    """
    return to_array(open_image(source), size)
