"""Scrambled captions, category-name strings and multi-hot labels (the non-encoder controls of Doerig et al.)."""

from __future__ import annotations

import numpy as np
import pytest

from llmvem.errors import DataError
from llmvem.text import category_strings, multi_hot, scramble_words


def test_scramble_words_permutes_each_caption_deterministically() -> None:
    caps = ["A man riding a wave on top of a surfboard.", "two dogs", "dog", "the the the"]
    out = scramble_words(caps, seed=3)
    for c, s in zip(caps, out, strict=True):
        assert sorted(s.split()) == sorted(c.split())  # the same words
    assert out[0] != caps[0] and out[1] == "dogs two"  # a different order whenever there is one
    assert out[2:] == caps[2:]
    assert scramble_words(caps, seed=3) == out  # deterministic
    assert scramble_words(caps[::-1], seed=3) == out[::-1]  # by content, not position
    assert scramble_words(caps[:1], seed=4) != out[:1]
    with pytest.raises(DataError, match="strings"):
        scramble_words([None], seed=0)  # type: ignore[list-item]


def test_category_strings() -> None:
    labels = [["person", "dog", "frisbee", "dog"], ["teddy bear"]]
    assert category_strings(labels) == ["dog, frisbee, person", "teddy bear"]
    assert category_strings(labels, sep=" ", sort=False) == ["person dog frisbee", "teddy bear"]
    with pytest.raises(DataError, match="image 1 has no category"):
        category_strings([["dog"], []])
    with pytest.raises(DataError, match="wrap a single name"):
        category_strings(["dog"])


def test_multi_hot() -> None:
    m, cats = multi_hot([["dog", "person"], [], ["cat", "dog"]])
    assert cats == ["cat", "dog", "person"] and m.dtype == np.float32
    np.testing.assert_array_equal(m, [[0, 1, 1], [0, 0, 0], [1, 1, 0]])
    m2, cats2 = multi_hot([["dog"]], categories=["person", "dog", "cat"])
    assert cats2 == ["person", "dog", "cat"] and m2.tolist() == [[0, 1, 0]]
    with pytest.raises(DataError, match=r"\['zebra'\]"):
        multi_hot([["zebra"]], categories=["dog"])
