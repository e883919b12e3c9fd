"""One image-to-RGB conversion: the vision stage (load_image) and the describe stage (prepare_image) see the same
pixels for 16-bit, alpha, palette and EXIF-rotated files, and bad files get one reason in both."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmvem.data.images import ALPHA_BACKGROUND
from llmvem.data.stimuli import StimulusSet, UnreadableImagesError, check_image, load_image
from llmvem.describe.base import DescribeFailure
from llmvem.describe.images import prepare_image


def _gradient16(path: Path) -> np.ndarray:
    """A 16-bit greyscale PNG whose values span 0..65535 (48 × 64); returns the 16-bit array."""
    a = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    Image.fromarray(a).save(path)  # PIL writes mode I;16 as a 16-bit PNG
    return a


def _same_pixels(path: Path) -> np.ndarray:
    """The pixels of ``path`` as the vision stage reads them, asserting the describe stage reads the same."""
    vision = np.asarray(load_image(path))
    described = np.asarray(prepare_image(path, max_side=None).image)
    assert vision.dtype == np.uint8 and vision.shape[2] == 3
    np.testing.assert_array_equal(vision, described)
    return vision


def test_16bit_png_is_rescaled_not_clipped_to_white(tmp_path: Path) -> None:
    a16 = _gradient16(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    px = _same_pixels(tmp_path / "g16.png")
    expected = np.clip(np.rint(a16 / 257.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(px[..., 0], expected)  # PIL's convert("RGB") gives 255 almost everywhere
    assert px.min() == 0 and px.max() == 255 and len(np.unique(px)) > 200


def test_alpha_is_composited_on_the_same_background_everywhere(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)  # transparent black ...
    rgba[:4, :, :] = (200, 10, 10, 255)  # ... under an opaque red top half
    rgba[4:, :4, :] = (0, 0, 255, 128)  # and a half-transparent blue quarter
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    px = _same_pixels(tmp_path / "a.png")
    assert tuple(px[0, 0]) == (200, 10, 10)
    assert tuple(px[7, 7]) == ALPHA_BACKGROUND  # not the hidden black
    assert tuple(px[7, 0]) == (127, 127, 255)  # half blue over white
    # palette transparency and LA too
    Image.fromarray(rgba, "RGBA").convert("LA").save(tmp_path / "la.png")
    assert tuple(_same_pixels(tmp_path / "la.png")[7, 7]) == ALPHA_BACKGROUND
    pal = Image.fromarray(rgba[..., :3], "RGB").convert("P")
    pal.info["transparency"] = pal.getpixel((7, 7))
    pal.save(tmp_path / "p.png", transparency=pal.getpixel((7, 7)))
    assert tuple(_same_pixels(tmp_path / "p.png")[7, 7]) == ALPHA_BACKGROUND


def test_exif_orientation_is_applied_by_both_stages(tmp_path: Path) -> None:
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :5] = 255  # white left edge
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    px = _same_pixels(tmp_path / "r.jpg")
    assert px.shape[:2] == (20, 10)
    assert px[:5].mean() > 200 and px[-5:].mean() < 50  # the white edge is now on top


def test_plain_rgb_and_greyscale_are_unchanged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = (rng.random((9, 7, 3)) * 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "c.png")
    np.testing.assert_array_equal(_same_pixels(tmp_path / "c.png"), a)
    Image.fromarray(a[..., 0]).save(tmp_path / "l.png")
    np.testing.assert_array_equal(_same_pixels(tmp_path / "l.png"), np.repeat(a[..., :1], 3, axis=2))
    assert prepare_image(tmp_path / "c.png").source_bytes is not None  # still sent unchanged


def test_decompression_bomb_is_a_clear_reason_in_both_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # 2000 px > 2 × 400: PIL refuses to decode
    reason = check_image(tmp_path / "big.png")
    assert reason is not None and "too large to decode safely" in reason and "MAX_IMAGE_PIXELS" in reason
    with pytest.raises(UnreadableImagesError, match="too large to decode safely"):
        StimulusSet.from_paths([tmp_path / "big.png"])
    with pytest.raises(DescribeFailure, match="too large to decode safely") as info:
        prepare_image(tmp_path / "big.png")
    assert info.value.kind == "input"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/mem gives a real I/O error on Linux")
def test_unreadable_file_is_not_called_corrupt(tmp_path: Path) -> None:
    bad = tmp_path / "io.jpg"
    bad.symlink_to("/proc/self/mem")  # a regular file whose read fails with EIO
    reason = check_image(bad)
    assert reason is not None and "cannot read the file" in reason and "corrupt" not in reason
    assert check_image(tmp_path / "missing.png") == "file not found"
    (tmp_path / "t.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    assert check_image(tmp_path / "t.png") == "not a recognised image format"


def test_an_empty_file_is_called_empty(tmp_path: Path) -> None:
    (tmp_path / "zero.png").write_bytes(b"")
    assert check_image(tmp_path / "zero.png") == "empty file (0 bytes)"
    with pytest.raises(DescribeFailure, match="empty file"):
        prepare_image(tmp_path / "zero.png", max_side=None)
