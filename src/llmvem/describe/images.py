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

    from llmvem.data.stimuli import ImageRef

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


def prepare_image(path: str | Path | ImageRef, max_side: int | None = DEFAULT_MAX_SIDE) -> PreparedImage:
    """Decode ``path`` fully and make it 8-bit RGB no larger than ``max_side`` pixels on its longer side.

    ``path`` may also be an :class:`~llmvem.data.stimuli.ImageRef` (a row of ``nsd_stimuli.hdf5``): its pixels are
    encoded as PNG and then treated exactly like a PNG file.

    The conversion is the one every stage uses (:func:`llmvem.data.images.to_rgb`: EXIF orientation applied,
    16-bit rescaled, alpha composited onto white), so a describer sees the pixels the vision model sees. Images
    larger than ``max_side`` are then downscaled with Lanczos filtering; ``max_side`` ``None`` or 0 keeps the size.

    Raises:
        DescribeFailure: (kind ``"input"``) the file is missing, unreadable, truncated, not an image or above
            PIL's decompression-bomb limit.
    """
    from PIL import Image

    from llmvem.data.images import ImageReadError, read_image, to_rgb

    if isinstance(path, str | Path):
        p = Path(path)
        try:
            opened, raw = read_image(p)
        except ImageReadError as exc:
            raise DescribeFailure(f"{p.name}: {exc.reason}", kind="input") from None
    else:
        opened, raw = _read_ref(path)
    fmt = opened.format or ""
    original = opened.size
    im, notes = to_rgb(opened)
    changed = bool(notes)
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


def _read_ref(ref: ImageRef) -> tuple[Image.Image, bytes]:
    """(decoded image, PNG bytes) of an image that is not a file; unreadable → DescribeFailure (kind "input")."""
    from PIL import Image

    from llmvem.errors import DataError

    try:
        raw = ref.png()
    except DataError as exc:
        raise DescribeFailure(f"{ref}: {exc}", kind="input") from None
    im = Image.open(io.BytesIO(raw))
    im.load()
    return im, raw
