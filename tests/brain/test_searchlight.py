"""Searchlight spheres and RDMs against a direct loop and against rsatoolbox."""

from __future__ import annotations

import numpy as np
import pytest

from llmvem.brain import compute_rdm, searchlight_rdms, searchlight_rsa, searchlight_spheres, upper_tri
from llmvem.brain.rsa import compare_rdms
from llmvem.errors import ConfigError, DataError


def _volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.zeros((7, 6, 5), dtype=bool)
    mask[1:6, 1:5, 1:4] = True
    mask[3, 2, 2] = False
    data = rng.standard_normal((12, 7, 6, 5))
    return mask, data


def test_spheres_match_a_direct_definition() -> None:
    mask, _ = _volume()
    sl = searchlight_spheres(mask, radius=2.0, min_in_mask=0.6)
    coords = np.argwhere(np.ones(mask.shape, dtype=bool))
    for c, centre in enumerate(sl.centres):
        cc = np.array(np.unravel_index(centre, mask.shape))
        dist = np.sqrt(((coords - cc) ** 2).sum(1))
        sphere = coords[dist < 2.0]
        inside = mask[tuple(sphere.T)]
        assert inside.mean() >= 0.6
        expected = np.sort(np.ravel_multi_index(tuple(sphere[inside].T), mask.shape))
        got = np.sort(sl.neighbours[c, : sl.counts[c]])
        np.testing.assert_array_equal(got, expected)
    # every in-mask voxel not chosen has < 60 % of its sphere in the mask
    assert sl.centres.size < mask.sum()


def test_rdms_and_scores_match_a_loop() -> None:
    mask, data = _volume()
    sl = searchlight_spheres(mask, radius=1.8, min_in_mask=0.5)
    rdms = searchlight_rdms(data, sl, chunk=7, n_jobs=2)
    flat = data.reshape(12, -1)
    for c in range(0, sl.centres.size, 5):
        nb = sl.neighbours[c, : sl.counts[c]]
        np.testing.assert_allclose(rdms[c], upper_tri(compute_rdm(flat[:, nb])), atol=1e-12)
    model = compute_rdm(np.random.default_rng(1).standard_normal((12, 4)))
    maps, centres = searchlight_rsa(data, mask, model, radius=1.8, min_in_mask=0.5, method="spearman")
    assert maps.shape == (1, 7, 6, 5)
    np.testing.assert_allclose(maps.reshape(1, -1)[0, centres], compare_rdms(model, rdms, "spearman"), atol=1e-12)
    assert np.isnan(maps.reshape(-1)[np.setdiff1d(np.arange(mask.size), centres)]).all()


def test_agrees_with_rsatoolbox() -> None:
    pytest.importorskip("rsatoolbox")
    from rsatoolbox.util import searchlight as rs_sl

    mask, data = _volume(3)
    # rsatoolbox: centres from the untruncated sphere fraction, patterns from the truncated (in-mask) sphere
    centres, _ = rs_sl.get_volume_searchlight(mask, radius=2, threshold=0.5)
    _, neighbours = rs_sl.get_volume_searchlight(mask, radius=2, threshold=0.0, truncate_at_boundary=True)
    all_centres = np.ravel_multi_index(np.nonzero(mask), mask.shape)
    lookup = dict(zip(all_centres.tolist(), neighbours, strict=True))
    ref = rs_sl.get_searchlight_RDMs(
        data.reshape(12, -1), centres, [lookup[c] for c in centres], np.arange(12), verbose=False
    )
    sl = searchlight_spheres(mask, radius=2, min_in_mask=0.5)
    np.testing.assert_array_equal(sl.centres, centres)
    np.testing.assert_allclose(searchlight_rdms(data, sl), ref.dissimilarities, atol=1e-10)


def test_bad_inputs() -> None:
    mask, data = _volume()
    with pytest.raises(DataError, match="3-D"):
        searchlight_spheres(mask[0])
    with pytest.raises(ConfigError, match="min_in_mask"):
        searchlight_spheres(mask, min_in_mask=1.5)
    sl = searchlight_spheres(mask, radius=1.5)
    with pytest.raises(DataError, match="spheres were built"):
        searchlight_rdms(data[:, :6], sl)
    bad = data.copy()
    bad[0, 2, 2, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        searchlight_rdms(bad, sl)
