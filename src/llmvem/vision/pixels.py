"""Whole-network training inputs as 8-bit pixels: a quarter of float32's size, memory-mapped, normalised per batch.

When every block of a backbone trains, its "activations" are the preprocessed images themselves. As float32 they take
602 kB per 224 × 224 image (44 GB for the 73,000 NSD images); as the 0..255 pixels they came from, 150 kB, read from
disk only as batches need them. Every backbone here normalises pixels per channel, ``x = p · scale + offset`` (TF-Lite
``(p − 127) / 128``, timm and CLIP ``(p / 255 − mean) / std``); :func:`pixel_affine` finds that map from the
backbone's own preprocessing (a black and a white image), and :meth:`PixelArray.from_normalized` checks that it
recovers every value before anything is stored (else the caller keeps float32).

Example
-------
>>> import numpy as np
>>> scale, offset = np.full(3, 1 / 128, np.float32), np.full(3, -127 / 128, np.float32)  # TF-Lite (p - 127) / 128
>>> px = PixelArray(np.zeros((2, 3, 4, 4), np.uint8), scale, offset)
>>> px[0].shape, px[:2].dtype, px.shape
((3, 4, 4), dtype('float32'), (2, 3, 4, 4))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmvem.errors import DataError

#: largest error, in pixel units, with which normalised values must map back to whole pixels
_TOLERANCE = 1e-2


@dataclass(frozen=True)
class PixelArray:
    """(n, 3, H, W) uint8 pixels standing for the float32 array ``pixels · scale + offset`` (per channel).

    Indexing returns normalised float32 rows, as indexing the float array would, so code written for arrays of
    activations (slicing, ``len``, ``shape``) works unchanged; :meth:`rows` gives a torch batch normalised on its
    device.

    Attributes:
        pixels: (n, 3, H, W) uint8, typically a read-only memory map from the store.
        scale, offset: (3,) float32 of the backbone's normalisation.
    """

    pixels: np.ndarray
    scale: np.ndarray
    offset: np.ndarray

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 4 or self.pixels.shape[1] != 3:
            raise DataError(f"pixel array: need (n, 3, H, W) uint8, got {self.pixels.dtype} {self.pixels.shape}")
        if np.shape(self.scale) != (3,) or np.shape(self.offset) != (3,):
            raise DataError("pixel array: scale and offset need one value per channel, (3,)")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def __getitem__(self, index: Any) -> np.ndarray:
        if hasattr(index, "numpy"):  # a torch index tensor
            index = index.cpu().numpy()
        rows = np.asarray(self.pixels[index])
        s = np.asarray(self.scale, np.float32)[:, None, None]
        o = np.asarray(self.offset, np.float32)[:, None, None]
        return (rows.astype(np.float32) * s + o).astype(np.float32, copy=False)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out

    def rows(self, index: Any, device: Any) -> Any:
        """Rows ``index`` as a float32 torch tensor on ``device``: the pixels travel as bytes, then are normalised."""
        import torch

        if hasattr(index, "numpy"):
            index = index.cpu().numpy()
        px = torch.from_numpy(np.require(self.pixels[index], requirements=["C", "W"])).to(device)  # a memmap view: copy
        s = torch.tensor(np.asarray(self.scale, np.float32), device=px.device)[:, None, None]
        o = torch.tensor(np.asarray(self.offset, np.float32), device=px.device)[:, None, None]
        return px.to(torch.float32).mul_(s).add_(o)  # in place: one float buffer per batch

    def digest(self) -> str:
        """SHA-256 of the pixels (in chunks: no copy of the whole array) and the normalisation."""
        h = hashlib.sha256()
        h.update(f"pixels|{self.pixels.shape}|".encode())
        h.update(np.asarray(self.scale, np.float32).tobytes() + np.asarray(self.offset, np.float32).tobytes())
        for i in range(0, len(self), 256):
            h.update(np.ascontiguousarray(self.pixels[i : i + 256]).tobytes())
        return h.hexdigest()

    @staticmethod
    def quantize(x: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray | None:
        """Normalised images (b, 3, H, W) → their uint8 pixels, or ``None`` if some value is not ``p · scale +
        offset`` for a whole pixel ``p`` in 0..255 (to within 1/100 of a pixel)."""
        s = np.asarray(scale, np.float64)[:, None, None]
        o = np.asarray(offset, np.float64)[:, None, None]
        p = (np.asarray(x, np.float64) - o) / s
        r = np.rint(p)
        if p.size and (np.abs(p - r).max() > _TOLERANCE or r.min() < 0 or r.max() > 255):
            return None
        return r.astype(np.uint8)


def pixel_affine(preprocess: Any, size: tuple[int, int] = (224, 224)) -> tuple[np.ndarray, np.ndarray] | None:
    """``(scale, offset)`` (3,) float32 of a preprocessing that maps 0..255 pixels to ``p · scale + offset`` per
    channel, read off a black and a white image; ``None`` when the two images do not give such a map."""
    from PIL import Image

    lo = np.asarray(preprocess(Image.new("RGB", size, (0, 0, 0))), dtype=np.float64)
    hi = np.asarray(preprocess(Image.new("RGB", size, (255, 255, 255))), dtype=np.float64)
    if lo.ndim != 3 or lo.shape[0] != 3 or lo.shape != hi.shape:
        return None
    offset, top = lo.reshape(3, -1), hi.reshape(3, -1)
    if np.ptp(offset, axis=1).max() > 1e-5 or np.ptp(top, axis=1).max() > 1e-5:  # not constant over the image
        return None
    scale = (top[:, 0] - offset[:, 0]) / 255.0
    if not np.all(np.abs(scale) > 1e-8):
        return None
    return scale.astype(np.float32), offset[:, 0].astype(np.float32)
