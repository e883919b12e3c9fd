"""Images as backends receive them: decoded, checked, converted to 8-bit RGB, downscaled to a maximum side.

Everything done to an image is written to ``notes`` and stored with its description, so a description of a
downscaled or converted image says so. Unreadable files raise :class:`DescribeFailure` (kind ``"input"``): the
runner records them as failures and goes on with the other images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmvem.describe.base import DescribeFailure

if TYPE_CHECKING:
    from PIL import Image

#: formats sent as they are (no re-encoding) when already 8-bit RGB/greyscale and small enough
_PASSTHROUGH = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
DEFAULT_MAX_SIDE = 1536


@dataclass
class PreparedImage:
    """An image ready to send.

    Attributes:
        image: decoded RGB image (width × height).
        notes: conversions applied, for the record (empty when the file was used as it is).
        original_size: (width, height) of the file.
        source_bytes: the file's bytes when they can be sent unchanged, else ``None``.
        source_mime: MIME type of ``source_bytes``.
    """

    image: Image.Image
    notes: list[str] = field(default_factory=list)
    original_size: tuple[int, int] = (0, 0)
    source_bytes: bytes | None = None
    source_mime: str = ""

    def encoded(self) -> tuple[bytes, str]:
        """(bytes, MIME type) to send: the original file when unchanged, else PNG (converted) or JPEG (photos)."""
        if self.source_bytes is not None:
            return self.source_bytes, self.source_mime
        buf = io.BytesIO()
        if self.source_mime == "image/jpeg":
            self.image.save(buf, format="JPEG", quality=95)
            return buf.getvalue(), "image/jpeg"
        self.image.save(buf, format="PNG")
        return buf.getvalue(), "image/png"

    def data_url(self) -> str:
        """``data:<mime>;base64,...`` of :meth:`encoded`."""
        import base64

        data, mime = self.encoded()
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def prepare_image(path: str | Path, max_side: int | None = DEFAULT_MAX_SIDE) -> PreparedImage:
    """Decode ``path`` fully and make it 8-bit RGB no larger than ``max_side`` pixels on its longer side.

    CMYK, 16-bit, greyscale-with-alpha, palette and alpha images are converted (alpha is composited onto white);
    images larger than ``max_side`` are downscaled with Lanczos filtering; EXIF orientation is applied. ``max_side``
    ``None`` or 0 keeps the size.

    Raises:
        DescribeFailure: (kind ``"input"``) the file is missing, truncated or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DescribeFailure(f"cannot read {p}: {exc.strerror or exc}", kind="input") from None
    try:
        opened = Image.open(io.BytesIO(raw))
        opened.load()
    except UnidentifiedImageError:
        raise DescribeFailure(f"{p.name}: not a recognised image format", kind="input") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DescribeFailure(f"{p.name}: corrupt or truncated image ({exc})", kind="input") from None
    fmt = opened.format or ""
    im: Image.Image = opened
    notes: list[str] = []
    original = im.size
    changed = False
    orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
    if orientation not in (None, 1):
        im = ImageOps.exif_transpose(im)
        notes.append(f"applied EXIF orientation {orientation}")
        changed = True
    mode = im.mode
    if mode not in ("RGB", "L"):
        im = _to_rgb(im)
        notes.append(f"converted {mode} to RGB" + (" (alpha composited onto white)" if _has_alpha(mode, im) else ""))
        changed = True
    elif mode == "L":
        im = im.convert("RGB")  # greyscale files are sent as they are; the decoded copy is RGB for local models
    if max_side and max(im.size) > max_side:
        w, h = im.size
        scale = max_side / max(w, h)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        im = im.resize(new, Image.Resampling.LANCZOS)
        notes.append(f"downscaled {w}x{h} to {new[0]}x{new[1]} (max side {max_side})")
        changed = True
    passthrough = not changed and fmt in _PASSTHROUGH
    mime = _PASSTHROUGH.get(fmt, "image/png")
    if not passthrough and fmt not in _PASSTHROUGH and not changed:
        notes.append(f"re-encoded {fmt or 'unknown format'} as PNG")
    return PreparedImage(im, notes, original, raw if passthrough else None, mime)


def _has_alpha(mode: str, im: Image.Image) -> bool:
    return mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode: 16/32-bit integer and float images are rescaled to their range."""
    import numpy as np
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535):
            a = a / 257.0  # 16-bit 0..65535 → 0..255
        else:
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode == "CMYK":
        return im.convert("RGB")
    return im.convert("RGB")
