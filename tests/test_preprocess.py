"""The one preprocessing: real files of every awkward kind, written in the test, come out as (S, S, 3) uint8."""

import numpy as np
import pytest
from PIL import Image

from edgedetect.errors import ImageError
from edgedetect.preprocess import load_image, open_image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def upright_pattern() -> np.ndarray:
    """32 wide x 64 tall: top-left red, top-right green, bottom half blue (every rotation/flip looks different)."""
    a = np.zeros((64, 32, 3), np.uint8)
    a[:32, :16] = RED
    a[:32, 16:] = GREEN
    a[32:] = BLUE
    return a


def quadrant_colors(a: np.ndarray) -> list:
    """Mean colour of the centre of each block of the pattern, rounded to the nearest primary."""
    h, w = a.shape[:2]
    blocks = [a[h // 8 : 3 * h // 8, w // 8 : 3 * w // 8], a[h // 8 : 3 * h // 8, 5 * w // 8 : 7 * w // 8],
              a[5 * h // 8 : 7 * h // 8, w // 4 : 3 * w // 4]]
    return [tuple(int(v) for v in np.round(b.reshape(-1, 3).mean(0) / 255) * 255) for b in blocks]


# The EXIF orientation says how to turn the stored pixels to show them; store the inverse of that turn.
@pytest.mark.parametrize("orientation, stored_transpose", [
    (3, Image.Transpose.ROTATE_180),
    (6, Image.Transpose.ROTATE_90),
    (8, Image.Transpose.ROTATE_270),
    (2, Image.Transpose.FLIP_LEFT_RIGHT),
])
def test_exif_rotated_jpeg_comes_out_upright(tmp_path, orientation, stored_transpose):
    upright = Image.fromarray(upright_pattern())
    stored = upright.transpose(stored_transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated_{orientation}.jpg"
    stored.save(path, quality=95, exif=exif)
    assert quadrant_colors(np.asarray(Image.open(path).convert("RGB"))) != [RED, GREEN, BLUE]

    img = open_image(path)
    assert img.size == (32, 64)
    assert quadrant_colors(np.asarray(img)) == [RED, GREEN, BLUE]
    # load_image centre-crops the upright 32x64 picture to its middle 32x32: the red/green vs blue border
    # runs across the middle, so the top of the array is red/green and the bottom blue.
    arr = load_image(path, 32)
    assert arr[4, 4, 0] > 200 and arr[4, 28, 1] > 200 and arr[28, 16, 2] > 200


def _check_rgb(arr: np.ndarray, size: int) -> None:
    assert arr.shape == (size, size, 3) and arr.dtype == np.uint8


def test_grayscale_png(tmp_path):
    Image.new("L", (20, 10), 100).save(tmp_path / "g.png")
    arr = load_image(tmp_path / "g.png", 8)
    _check_rgb(arr, 8)
    assert np.all(arr == 100)


def test_palette_png(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    img.save(tmp_path / "p.png")
    arr = load_image(tmp_path / "p.png", 8)
    _check_rgb(arr, 8)
    assert np.all(arr == [10, 20, 30])


def test_palette_with_transparency_goes_over_white(tmp_path):
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 0, 200, 0, 0] + [0, 0, 0] * 254)
    img.paste(1, (0, 8, 16, 16))  # bottom half: opaque red (index 1); top half: transparent black (index 0)
    img.save(tmp_path / "pt.png", transparency=0)
    arr = load_image(tmp_path / "pt.png", 16)
    _check_rgb(arr, 16)
    assert np.all(arr[:8] == 255) and np.all(arr[8:] == [200, 0, 0])


def test_rgba_alpha_composited_over_white(tmp_path):
    a = np.zeros((16, 16, 4), np.uint8)
    a[:, :8] = [0, 0, 255, 255]  # left: opaque blue
    a[:, 8:] = [0, 0, 0, 0]  # right: fully transparent (black underneath must not show)
    Image.fromarray(a, "RGBA").save(tmp_path / "rgba.png")
    arr = load_image(tmp_path / "rgba.png", 16)
    _check_rgb(arr, 16)
    assert np.all(arr[:, :7] == [0, 0, 255]) and np.all(arr[:, 9:] == 255)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)  # pure red in CMYK
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    arr = load_image(tmp_path / "cmyk.jpg", 8)
    _check_rgb(arr, 8)
    assert np.all(np.abs(arr.astype(int) - [255, 0, 0]) <= 8)


@pytest.mark.parametrize("value16, value8", [(0, 0), (128 * 257, 128), (65535, 255)])
def test_16_bit_png_scaled_to_8_bits(tmp_path, value16, value8):
    Image.fromarray(np.full((12, 12), value16, np.uint16)).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")
    arr = load_image(tmp_path / "i16.png", 6)
    _check_rgb(arr, 6)
    assert np.all(arr == value8)


@pytest.mark.parametrize("limit", [3000, 1000])  # 4096 px: over the limit (warning) and over twice it (error)
def test_decompression_bomb_refused_with_file_name(tmp_path, monkeypatch, limit):
    path = tmp_path / "big (1).png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageError, match=r"big \(1\)\.png: image too large"):
        load_image(path, 8)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_reported(tmp_path, fmt):
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), np.uint8)
    full = tmp_path / f"full.{fmt.lower()}"
    Image.fromarray(noise).save(full, fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=rf"^{cut}: cannot decode image \(truncated image data\)$"):
        load_image(cut, 8)


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.write_text("this is not a picture\n"), "not an image file Pillow can read"),
    (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    (lambda p: p.mkdir(), "is a directory, not an image"),
    (lambda p: None, "file not found"),
])
def test_unreadable_inputs_raise_image_error_naming_the_file(tmp_path, make, problem):
    path = tmp_path / "photo (3).jpg"
    make(path)
    with pytest.raises(ImageError, match=rf"^{tmp_path}/photo \(3\)\.jpg: {problem}$"):
        load_image(path, 8)


def test_bytes_input_matches_file_input(tmp_path):
    x = np.random.default_rng(1).integers(0, 255, (40, 30, 3), np.uint8)
    Image.fromarray(x).save(tmp_path / "x.png")
    np.testing.assert_array_equal(load_image((tmp_path / "x.png").read_bytes(), 16), load_image(tmp_path / "x.png", 16))
    with pytest.raises(ImageError, match="^<bytes>: not an image file"):
        load_image(b"nope", 16)


def test_resize_is_centre_crop_then_bilinear(tmp_path):
    # 6 wide x 2 tall, columns 255 255 0 0 255 255: the centre crop keeps only the two black columns.
    wide = np.zeros((2, 6, 3), np.uint8)
    wide[:, [0, 1, 4, 5]] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert np.all(load_image(tmp_path / "wide.png", 2) == 0)

    # 4x4, columns 0 0 255 255, shrunk to 2x2. Pillow's bilinear (triangle filter widened by the scale, so it
    # antialiases) weighs input columns 0,1,2 at 0.75, 0.75, 0.25 for output column 0: 255 * 0.25 / 1.75 = 36.4.
    # Nearest or box resampling would give 0 and 255.
    step = np.zeros((4, 4, 3), np.uint8)
    step[:, 2:] = 255
    Image.fromarray(step).save(tmp_path / "step.png")
    arr = load_image(tmp_path / "step.png", 2)
    assert np.all(arr[:, 0] == 36) and np.all(arr[:, 1] == 219)


def test_image_already_at_size_is_untouched(tmp_path):
    x = np.random.default_rng(2).integers(0, 255, (16, 16, 3), np.uint8)
    Image.fromarray(x).save(tmp_path / "x.png")
    np.testing.assert_array_equal(load_image(tmp_path / "x.png", 16), x)
