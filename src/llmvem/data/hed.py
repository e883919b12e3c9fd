"""Multi-hot category labels from HED (Hierarchical Event Descriptors) annotations of the NSD shared images."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from llmvem.errors import DataError

#: HED words that describe the annotation's structure, not the image's content.
STRUCTURAL_TAGS = frozenset(
    {"Item-count", "Foreground-view", "Background-view", "High", "Low", "Agent-trait", "Towards", "Away-from",
     "Action", "Terrain"}
)  # fmt: skip

_TAG = re.compile(r"[A-Za-z][A-Za-z0-9/-]*")


def hed_tags(hed_short: str) -> set[str]:
    """Content tags of one short-form HED string (the first component of each tag path, structure removed).

    >>> sorted(hed_tags("(Foreground-view, ((Item-count, High), Ingestible-object)), (Background-view, (Human, Body))"))
    ['Body', 'Human', 'Ingestible-object']
    """
    return {t.split("/")[0] for t in _TAG.findall(hed_short)} - STRUCTURAL_TAGS


def hed_labels(
    hed_strings: Sequence[str], min_fraction: float = 0.03, max_fraction: float = 0.9
) -> tuple[np.ndarray, list[str]]:
    """Multi-hot labels over the tags present in between ``min_fraction`` and ``max_fraction`` of the images.

    Returns:
        labels: (n, L) float32 multi-hot; vocabulary: the L tag names (most frequent first).
    """
    if len(hed_strings) == 0:
        raise DataError("no HED annotations given")
    per_image = [hed_tags(str(s)) for s in hed_strings]
    counts: dict[str, int] = {}
    for tags in per_image:
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
    n = len(per_image)
    vocab = sorted((t for t, c in counts.items() if min_fraction * n <= c <= max_fraction * n),
                   key=lambda t: (-counts[t], t))  # fmt: skip
    if not vocab:
        raise DataError(f"no HED tag occurs in {min_fraction:.0%}–{max_fraction:.0%} of the {n} images")
    index = {t: k for k, t in enumerate(vocab)}
    labels = np.zeros((n, len(vocab)), dtype=np.float32)
    for i, tags in enumerate(per_image):
        for t in tags:
            if t in index:
                labels[i, index[t]] = 1.0
    return labels, vocab
