"""Text embeddings with their id index: what :mod:`llmvem.text.embed` and :mod:`llmvem.text.multi` return.

>>> import numpy as np
>>> emb = TextEmbeddings(np.zeros((2, 3), dtype=np.float32), ["img1", "img2"], encoder="minilm")
>>> len(emb), emb.values.shape
(2, (2, 3))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class TextEmbeddings:
    """Embeddings with an id index.

    Attributes:
        values: (n, d) float32; row k belongs to ``ids[k]``.
        ids: the image (stimulus) id of each row: unique after ``aggregate="mean"``, repeated with ``"all"``.
        encoder: the text encoder's name.
        n_texts: (n,) int, how many texts were averaged into each row (1 for ``"all"``).
        texts: with ``"all"``, the text of each row; else empty.
        stats: what happened to the texts computed in this call (long texts, fallbacks; cached texts not counted).
    """

    values: np.ndarray
    ids: list[str]
    encoder: str = ""
    n_texts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    texts: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``path`` (.npy, float32) and ``<path>.ids.txt`` (one id per line); returns both paths."""
        from llmvem.data.files import save_matrix

        return save_matrix(path, np.asarray(self.values, dtype=np.float32), list(self.ids), f"embeddings {path}")
