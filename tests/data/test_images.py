"""Image checks and fixes: modes become RGB or grayscale as a scan would look, budgets are kept, damage is named."""

import io

import numpy as np
import pytest
from PIL import Image

from dharma_train.data.images import budget_size, image_bytes, prepare_image, to_supported_mode
from dharma_train.data.validation import RowProblem
from tests.data.documents import encoded, page_image, sideways_photo, two_frame_tiff


def _encode(image: Image.Image, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_transparent_pixels_become_white_paper_not_black():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((0, 0), (10, 20, 30, 255))
    converted = to_supported_mode(image)
    assert converted.mode == "RGB"
    assert converted.getpixel((1, 1)) == (255, 255, 255) and converted.getpixel((0, 0)) == (10, 20, 30)
    gray_alpha = to_supported_mode(Image.new("LA", (2, 2), (0, 0)))
    assert gray_alpha.getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    image = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert image.mode == "I;16"
    converted = to_supported_mode(image)
    assert converted.mode == "L" and list(converted.getdata()) == [0, 128, 255]


@pytest.mark.parametrize("mode, expected", [("CMYK", "RGB"), ("P", "RGB"), ("1", "L"), ("YCbCr", "RGB")])
def test_other_modes_convert(mode, expected):
    assert to_supported_mode(Image.new(mode, (3, 3))).mode == expected


def test_pixel_budget_keeps_the_aspect_ratio():
    width, height = budget_size(3900, 5500, 1_000_000)
    assert 0.99 * 1_000_000 < width * height <= 1_000_000
    assert abs(width / height - 3900 / 5500) < 0.01
    assert budget_size(1000, 1, 784) == (784, 1)


@pytest.mark.parametrize("mode, fmt", [("CMYK", "JPEG"), ("P", "PNG"), ("1", "PNG"), ("I;16", "PNG"), ("LA", "PNG"),
                                       ("RGBA", "PNG"), ("YCbCr", "TIFF")])
def test_planned_fix_matches_the_stored_image(tmp_path, mode, fmt):
    """The report's "A -> B" is planned from the header; the image written must be what it says."""
    image = Image.new(mode, (60, 40)) if mode in ("I;16", "YCbCr") else Image.new("RGB", (60, 40), "red").convert(mode)
    prepared = prepare_image(_encode(image, fmt), None, tmp_path, max_pixels=1000)
    (_, converted), (_, resized) = prepared.fixes
    with Image.open(prepared.path) as stored:
        assert converted == f"{mode} -> {stored.mode}"
        assert resized == f"60x40 -> {stored.width}x{stored.height} (max_pixels 1000)"


def test_unchanged_bytes_are_stored_verbatim_with_their_format(tmp_path):
    data = _encode(Image.new("L", (30, 40), 200), "JPEG")
    prepared = prepare_image(data, None, tmp_path)
    assert prepared.path.suffix == ".jpg" and prepared.path.read_bytes() == data and prepared.fixes == []


def test_fixed_jpeg_stays_jpeg_and_png_stays_lossless(tmp_path):
    jpeg = prepare_image(_encode(Image.new("CMYK", (30, 40)), "JPEG"), None, tmp_path)
    png = prepare_image(_encode(Image.new("RGB", (300, 400))), None, tmp_path, max_pixels=10_000)
    assert jpeg.path.suffix == ".jpg" and jpeg.fixes == [("converted_mode", "CMYK -> RGB")]
    assert png.path.suffix == ".png" and png.fixes[0][0] == "resized"


def test_files_that_need_no_fix_are_used_in_place(tmp_path):
    source = tmp_path / "page.png"
    source.write_bytes(_encode(Image.new("RGB", (30, 40))))
    prepared = prepare_image(source.read_bytes(), source, tmp_path / "store")
    assert prepared.path == source and not (tmp_path / "store").exists()


@pytest.mark.parametrize("size, reason", [((1, 300), "unusable_size"), ((2000, 5), "unusable_size")])
def test_strips_the_model_cannot_take_are_refused(tmp_path, size, reason):
    with pytest.raises(RowProblem) as problem:
        prepare_image(_encode(Image.new("RGB", size)), None, tmp_path)
    assert problem.value.reason == reason


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(RowProblem) as problem:
        prepare_image(_encode(Image.new("RGB", (30, 30))), None, tmp_path)
    assert problem.value.reason == "decompression_bomb"


@pytest.mark.parametrize("value, base64_value, reason", [
    (None, None, "missing_field"),
    ({"bytes": None, "path": None}, None, "missing_field"),
    (12, None, "non_string_value"),
    (None, 12, "non_string_value"),
    (None, "abc", "corrupt_image"),  # bad padding
    ("missing.png", None, "missing_file"),
    ("iVBORw0KGgo" * 1000, None, "missing_file"),  # base64 in the wrong column: named, not an OSError
])
def test_image_values_that_hold_no_image(tmp_path, value, base64_value, reason):
    with pytest.raises(RowProblem) as problem:
        image_bytes(value, base64_value, tmp_path)
    assert problem.value.reason == reason


def test_a_folder_given_as_an_image_is_called_a_folder_not_missing(tmp_path):
    """Issue 34: a directory in the image column read "does not exist"."""
    (tmp_path / "scans").mkdir()
    with pytest.raises(RowProblem) as problem:
        image_bytes("scans", None, tmp_path)
    assert problem.value.reason == "missing_file" and problem.value.detail.endswith("scans is a folder, not a file")


@pytest.mark.parametrize("fixed", [False, True])
def test_a_damaged_stored_image_is_made_again_from_its_source(tmp_path, caplog, fixed):
    """Issue 34: a damaged image under data/loaded/images was trusted, changed the pages' fingerprint and cost a
    finished stage; now it is checked (hash of a copy, PNG checksums of a fixed image) and made again."""
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 40, 3), dtype=np.uint8))
    data = _encode(image)
    first = prepare_image(data, None, tmp_path, max_pixels=1_000 if fixed else 10_000)
    intact = first.path.read_bytes()
    first.path.write_bytes(intact[: len(intact) // 2])
    again = prepare_image(data, None, tmp_path, max_pixels=1_000 if fixed else 10_000)
    assert again.path == first.path and again.path.read_bytes() == intact
    assert f"stored image {first.path} is damaged: made again from its source" in caplog.text
    caplog.clear()
    prepare_image(data, None, tmp_path, max_pixels=1_000 if fixed else 10_000)
    assert "damaged" not in caplog.text, "an intact stored image is used as it is"


def test_empty_bytes_are_corrupt(tmp_path):
    with pytest.raises(RowProblem, match="0 bytes"):
        prepare_image(b"", None, tmp_path)


def test_damaged_png_bytes_are_caught_by_their_checksums(tmp_path):
    data = bytearray(_encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 40), dtype=np.uint8))))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(RowProblem) as problem:
        prepare_image(bytes(data), None, tmp_path)
    assert problem.value.reason == "corrupt_image" and "checksum" in problem.value.detail


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "P"), ("TIFF", "CMYK")])
def test_truncated_files_of_any_format_are_named(tmp_path, fmt, mode):
    pixels = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels).convert(mode), fmt)
    with pytest.raises(RowProblem) as problem:
        prepare_image(data[: len(data) * 2 // 3], None, tmp_path)
    assert problem.value.reason == "truncated_image", problem.value.detail


def test_a_sideways_phone_photo_is_stored_upright_and_counted(tmp_path):
    data, upright = sideways_photo()
    prepared = prepare_image(data, None, tmp_path)
    assert [reason for reason, _ in prepared.fixes] == ["rotated_exif"]
    assert "orientation 6 (rotated 90° clockwise)" in prepared.fixes[0][1]
    with Image.open(prepared.path) as stored:
        assert stored.format == "JPEG" and stored.size == upright.size == (90, 120)
        assert stored.getexif().get(0x0112) in (None, 1), "the stored page is upright: no viewer rotates it again"
        corners = [stored.getpixel(xy)[0] for xy in ((10, 10), (80, 10), (10, 110), (80, 110))]
    assert corners[0] < 40 and min(corners[1:]) > 200, "the mark is top-left: not turned the other way or mirrored"


def test_orientation_is_applied_before_the_pixel_budget(tmp_path):
    data, _ = sideways_photo()
    prepared = prepare_image(data, None, tmp_path, max_pixels=2700)
    assert [reason for reason, _ in prepared.fixes] == ["rotated_exif", "resized"]
    assert prepared.fixes[1][1] == "90x120 -> 45x60 (max_pixels 2700)"
    with Image.open(prepared.path) as stored:
        assert stored.size == (45, 60)


def test_a_multi_frame_tiff_gives_the_page_a_row_names_or_is_refused(tmp_path):
    data = two_frame_tiff(seed=3)
    with pytest.raises(RowProblem) as problem:
        prepare_image(data, None, tmp_path)
    assert problem.value.reason == "multi_page"
    assert "has 2 pages" in problem.value.detail and "NAME.1.txt ... NAME.2.txt" in problem.value.detail
    assert "'page' column (1 to 2)" in problem.value.detail
    first, second = (prepare_image(data, None, tmp_path, page=page) for page in (1, 2))
    assert (first.page, second.page, first.fixes) == (1, 2, [])
    assert len({first.sha256, second.sha256}) == 2, "each page is its own page for duplicates and leaks"
    with Image.open(second.path) as stored:
        assert getattr(stored, "n_frames", 1) == 1
        assert np.array_equal(np.asarray(stored), np.asarray(page_image(4)))
    with pytest.raises(RowProblem, match="page 3 does not exist: the file has 2 page"):
        prepare_image(data, None, tmp_path, page=3)


def test_a_phone_jpeg_with_a_second_picture_is_one_page(tmp_path):
    """Phones write MPO files: the photo, then a depth map or preview. Pillow counts two frames; it is one page."""
    photo = page_image(5)
    data = encoded(photo, "MPO", save_all=True, append_images=[photo.resize((30, 40))])
    prepared = prepare_image(data, tmp_path / "photo.jpg", tmp_path)
    assert (prepared.path, prepared.page, prepared.fixes) == (tmp_path / "photo.jpg", None, [])
