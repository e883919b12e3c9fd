"""HED category labels for the NSD shared images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmvem.data.hed import hed_labels, hed_tags
from llmvem.errors import DataError


def test_tags_drop_structure_and_keep_first_path_component() -> None:
    s = "(Foreground-view, ((Item-count/1, (Human, Body, Agent-trait/Adult)), Furnishing)), (Background-view, Indoors)"
    assert hed_tags(s) == {"Human", "Body", "Furnishing", "Indoors"}


def test_labels_vocabulary_by_frequency() -> None:
    strings = ["(Human, Outdoors)", "(Human, Indoors)", "(Animal, Outdoors)", "(Human, Outdoors, Car)"]
    labels, vocab = hed_labels(strings, min_fraction=0.5, max_fraction=0.9)
    assert vocab == ["Human", "Outdoors"]  # Animal/Indoors/Car occur in < 50 %
    np.testing.assert_array_equal(labels, [[1, 1], [1, 0], [0, 1], [1, 1]])
    with pytest.raises(DataError, match="no HED tag"):
        hed_labels(strings, min_fraction=0.99)


def test_real_nsd_labels(data_dir: Path) -> None:
    from llmvem.data import load_dataset

    nsd = load_dataset("nsd_shared1000", data_dir)
    labels, vocab = hed_labels(list(nsd.hed["HED_short"]))
    assert labels.shape == (1000, len(vocab)) and 20 <= len(vocab) <= 60
    assert vocab[0] == "Outdoors" and {"Human", "Animal", "Indoors", "Vehicle"} <= set(vocab)
    assert labels[:, vocab.index("Outdoors")].mean() == pytest.approx(0.675)
