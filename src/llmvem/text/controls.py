"""Control representations of Doerig et al. (2025) that are not a text encoder of their own.

- :func:`scramble_words`: captions with their word order shuffled (embed them with the same sentence encoder to ask
  whether word order matters).
- :func:`category_strings`: the category names of each image as one string (``"dog, frisbee, person"``), to embed
  with a sentence encoder ("MPNet of category names") or as a word average (``encoder="glove"``).
- :func:`multi_hot`: multi-hot label vectors (n_images, n_categories).

The word-vector controls (all words; nouns, verbs, adjectives, adverbs or prepositions only) are text encoders:
``"glove"``, ``"glove-nouns"`` ... in :mod:`llmvem.text.words`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmvem.errors import DataError
from llmvem.hashing import hash_text


def scramble_words(texts: Sequence[str], seed: int = 0) -> list[str]:
    """Each text with its whitespace-separated words in a random order.

    The order depends only on ``seed`` and the text (not on its position), so a caption is scrambled the same way
    wherever it appears. A text with at least two different words always comes out in a different order.

    >>> scramble_words(["a dog on a red sofa"], seed=1)[0] != "a dog on a red sofa"
    True
    """
    out = []
    for text in texts:
        if not isinstance(text, str):
            raise DataError(f"scramble_words expects strings, got {type(text).__name__}")
        words = text.split()
        rng = np.random.default_rng([seed, int(hash_text(text)[:15], 16)])
        shuffled = list(words)
        if len(set(words)) > 1:
            while shuffled == words:
                shuffled = [words[i] for i in rng.permutation(len(words))]
        out.append(" ".join(shuffled))
    return out


def _check_labels(labels: Sequence[Sequence[str]]) -> list[list[str]]:
    if isinstance(labels, str):
        raise DataError("expected one sequence of category names per image, got a single string")
    out = []
    for k, names in enumerate(labels):
        if isinstance(names, str) or not all(isinstance(n, str) and n.strip() for n in names):
            raise DataError(
                f"labels of image {k} must be a list of non-empty category names, got {names!r} "
                "(wrap a single name in a list)"
            )
        out.append(list(dict.fromkeys(n.strip() for n in names)))  # unique, first-seen order
    return out


def category_strings(labels: Sequence[Sequence[str]], sep: str = ", ", sort: bool = True) -> list[str]:
    """One string of category names per image: ``[["person", "dog"]] → ["dog, person"]``.

    Args:
        labels: the category names of each image (duplicates are dropped).
        sep: separator between names.
        sort: sort the names alphabetically (so the string does not depend on annotation order).

    Raises:
        DataError: an image has no category, or a name is empty / not a string.
    """
    out = []
    for k, names in enumerate(_check_labels(labels)):
        if not names:
            raise DataError(f"image {k} has no category names; a category string needs at least one")
        out.append(sep.join(sorted(names) if sort else names))
    return out


def multi_hot(labels: Sequence[Sequence[str]], categories: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Multi-hot label vectors: (n_images, n_categories) float32 with 1 where the image has the category.

    Args:
        labels: the category names of each image (an image may have none: a zero row).
        categories: the columns, in order; default: every name in ``labels``, sorted.

    Returns:
        The matrix and its column names.

    Raises:
        DataError: a name is not one of ``categories`` (the message names them).
    """
    rows = _check_labels(labels)
    cats = sorted({n for r in rows for n in r}) if categories is None else list(categories)
    col = {c: j for j, c in enumerate(cats)}
    unknown = sorted({n for r in rows for n in r if n not in col})
    if unknown:
        raise DataError(f"{len(unknown)} category name(s) are not among the {len(cats)} categories: {unknown[:10]}")
    out = np.zeros((len(rows), len(cats)), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, [col[n] for n in r]] = 1.0
    return out, cats
