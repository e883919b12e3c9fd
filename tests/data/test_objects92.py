"""The objects92 loader on the real files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from llmvem.data.objects92 import STIMULUS_IDS, Objects92, load_objects92

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def obj(data_dir: Path) -> Objects92:
    return load_objects92(data_dir)


def test_stimuli_and_labels(obj: Objects92) -> None:
    assert obj.stimuli.ids == STIMULUS_IDS
    assert STIMULUS_IDS[0] == "image_01" and STIMULUS_IDS[-1] == "image_92"
    assert [p.name for p in obj.stimuli.paths[:2]] == ["image_01.jpg", "image_02.jpg"]
    assert obj.stimuli.load(0).size == (175, 175)
    assert obj.stimuli.labels is not None
    assert Counter(obj.stimuli.labels) == {
        "human body": 12,
        "human face": 12,
        "animal body": 12,
        "animal face": 12,
        "natural object": 23,
        "artificial object": 21,
    }
    assert obj.stimuli.labels[0] == "human body" and obj.stimuli.labels[12] == "human face"
    assert obj.stimuli.labels[-1] == "artificial object"


def test_categories(obj: Objects92) -> None:
    cat = obj.categories
    assert cat.shape == (92, 12) and list(cat.index) == STIMULUS_IDS
    assert all(dt.kind == "b" for dt in cat.dtypes)
    assert list(cat.columns[:8]) == ["animate", "inanim", "human", "nonhumani", "body", "face", "natObj", "artiObj"]
    assert cat["animate"].sum() == 48 and cat["inanim"].sum() == 44
    assert not (cat["animate"] & cat["inanim"]).any()
    labels = np.array(obj.stimuli.labels)
    assert set(labels[cat["face"].to_numpy()]) == {"human face", "animal face"}


def test_rdm_shapes_and_ids(obj: Objects92) -> None:
    expected = {
        "cichy_evc": 15,
        "cichy_it": 15,
        "kriegeskorte_hit": 4,
        "kriegeskorte_hit_sessions": 8,
        "behaviour": 16,
        "monkey_it": 1,
    }
    for key, n in expected.items():
        assert obj.rdms[key].rdms.shape == (n, 92, 92), key
    assert {k for k in obj.rdms if k.startswith("model_")} == {
        "model_animacy",
        "model_facebodymanmadenatobj",
        "model_eva",
        "model_hmax",
        "model_v1",
        "model_silhouette",
        "model_radon",
    }
    for key, r in obj.rdms.items():
        assert r.stimulus_ids == STIMULUS_IDS, key
        assert np.array_equal(r.rdms, r.rdms.transpose(0, 2, 1)), key  # exactly symmetric
        assert not np.diagonal(r.rdms, axis1=1, axis2=2).any(), key  # exactly zero diagonal
        assert (r.rdms >= 0).all(), key
    assert obj.rdms["kriegeskorte_hit"].subjects == ["BE", "KO", "SN", "TI"]
    assert obj.rdms["kriegeskorte_hit_sessions"].subjects[:2] == ["BE-sess1", "BE-sess2"]


def test_hit_average_matches_sessions(obj: Objects92) -> None:
    sess = obj.rdms["kriegeskorte_hit_sessions"].rdms.reshape(4, 2, 92, 92)
    np.testing.assert_allclose(obj.rdms["kriegeskorte_hit"].rdms, sess.mean(axis=1))


def test_cichy_it_vs_kriegeskorte_hit(obj: Objects92) -> None:
    """The data README: Cichy IT and Kriegeskorte hIT group RDMs correlate at Spearman 0.56."""
    iu = np.triu_indices(92, 1)
    rho = spearmanr(obj.rdms["cichy_it"].mean()[iu], obj.rdms["kriegeskorte_hit"].mean()[iu])[0]
    assert rho == pytest.approx(0.56, abs=0.03)
    # category structure: IT separates animate from inanimate more than EVC does
    animate = obj.categories["animate"].to_numpy()
    between = np.outer(animate, ~animate)
    within = np.outer(animate, animate)
    for key in ("cichy_it", "monkey_it"):
        m = obj.rdms[key].mean()
        assert m[between].mean() > m[within & ~np.eye(92, dtype=bool)].mean(), key


def test_descriptions(obj: Objects92) -> None:
    assert list(obj.descriptions) == STIMULUS_IDS
    assert all(len(t.split()) >= 20 for t in obj.descriptions.values())
    assert "hand" in obj.descriptions["image_01"].lower()
    assert obj.description_prompt.startswith("Describe what you see")


def test_loads_from_dataset_folder_too(data_dir: Path, obj: Objects92) -> None:
    again = load_objects92(data_dir / "objects92", verify=False)
    assert again.root == obj.root and again.stimuli.ids == obj.stimuli.ids
