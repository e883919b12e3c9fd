"""One way from an image file to the 8-bit RGB image every stage sees (vision features, describers, fine-tuning).

A vision model and a multimodal LLM compared on the same stimuli must see the same pixels, so the conversion lives
here and nowhere else:

- EXIF orientation is applied (the image as a viewer shows it);
- 16-bit and 32-bit integer images are rescaled (``I;16`` 0..65535 → 0..255, a linear map: value / 257); float and
  other ``I`` images are rescaled from their own min..max — PIL's ``convert("RGB")`` would clip them instead, which
  turns a 16-bit photograph into an all-white image;
- alpha is composited onto :data:`ALPHA_BACKGROUND`, **white**: it is how browsers, image viewers and llmvem's own
  HTML report show a transparent image, and what the descriptions already in users' stores were made from (the
  describe stage has always composited on white; changing it would invalidate paid API output). PIL's
  ``convert("RGB")`` instead drops alpha and keeps whatever colour hides under transparent pixels (often black);
- palette, CMYK and greyscale images become RGB.

Reading problems become one :class:`ImageReadError` whose ``reason`` says what is wrong (missing, permission
denied, not an image, truncated, above PIL's decompression-bomb limit); callers turn it into their own error type
(a :class:`~llmvem.data.stimuli.BadImage` entry, a describe failure of kind ``"input"``).
"""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import TYPE_CHECKING

from llmvem.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

#: RGB colour that transparent pixels are composited onto, in every stage
ALPHA_BACKGROUND = (255, 255, 255)
#: identity of the conversion below; part of the cache keys of everything computed from decoded pixels
RGB_CONVERSION = "rgb-v2: exif, 16-bit /257, alpha on white"

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class ImageReadError(DataError):
    """``path`` cannot be read as an image; ``reason`` says why (without the path)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_image(path: str | Path) -> tuple[Image.Image, bytes]:
    """Read and fully decode the image file ``path`` (no conversion).

    Returns:
        ``(image, raw)``: the decoded PIL image and the file's bytes.
    Raises:
        ImageReadError: missing, unreadable (permission, I/O error), empty, not an image, corrupt or truncated, or
            larger than PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS`` × 2).
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(p, "file not found") from None
    except PermissionError:
        raise ImageReadError(p, "permission denied (cannot read the file)") from None
    except IsADirectoryError:
        raise ImageReadError(p, "is a directory, not an image file") from None
    except OSError as exc:
        raise ImageReadError(p, f"cannot read the file ({exc.strerror or exc})") from None
    if not raw:
        raise ImageReadError(p, "empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(raw))
        im.load()
    except UnidentifiedImageError:
        raise ImageReadError(p, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            p,
            f"too large to decode safely ({exc}); downscale the file first, or raise PIL.Image.MAX_IMAGE_PIXELS "
            "if you trust it",
        ) from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EIO):
            raise ImageReadError(p, f"cannot read the file ({exc.strerror})") from None
        raise ImageReadError(p, f"corrupt or truncated image ({exc})") from None
    except (SyntaxError, ValueError, EOFError) as exc:  # bad headers in some plugins
        raise ImageReadError(p, f"corrupt image ({exc})") from None
    return im, raw


def has_alpha(im: Image.Image) -> bool:
    """Whether ``im`` has transparency (an alpha band or a palette transparency entry)."""
    return im.mode in _ALPHA_MODES or (im.mode in ("P", "L", "RGB") and "transparency" in im.info)


def to_rgb(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """8-bit RGB from any PIL image, the one conversion of the project (see the module docstring).

    Returns:
        ``(rgb, notes)``: the converted image (width × height unchanged unless EXIF rotates it) and what was done,
        for records (empty for an 8-bit RGB or greyscale image without orientation).
    """
    from PIL import Image, ImageOps

    notes: list[str] = []
    orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
    if orientation not in (None, 1):
        im = ImageOps.exif_transpose(im)
        notes.append(f"applied EXIF orientation {orientation}")
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im, notes
    if mode == "L" and "transparency" not in im.info:
        return im.convert("RGB"), notes
    if mode in _WIDE_MODES:
        out = _rescale_wide(im)
        notes.append(f"converted {mode} to RGB")  # rescaled to 8 bits
        return out, notes
    alpha = has_alpha(im)
    if mode == "P" or "transparency" in im.info:
        im = im.convert("RGBA" if alpha else "RGB")
    if alpha:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        out = Image.alpha_composite(bg, rgba).convert("RGB")
        notes.append(f"converted {mode} to RGB (alpha composited onto {_colour_name()})")
        return out, notes
    notes.append(f"converted {mode} to RGB")
    return im.convert("RGB"), notes


def load_rgb(path: str | Path) -> Image.Image:
    """:func:`read_image` then :func:`to_rgb`: the decoded 8-bit RGB image of ``path``."""
    im, _ = read_image(path)
    return to_rgb(im)[0]


def _rescale_wide(im: Image.Image) -> Image.Image:
    """Greyscale 16/32-bit integer or float image → 8-bit RGB (16-bit: value / 257; others: own min..max)."""
    import numpy as np
    from PIL import Image

    a = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535):
        a = a / 257.0  # 0..65535 → 0..255
    else:
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        a = (np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo) - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")


def _colour_name() -> str:
    return {(255, 255, 255): "white", (0, 0, 0): "black"}.get(ALPHA_BACKGROUND, f"RGB{ALPHA_BACKGROUND}")
