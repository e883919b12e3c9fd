"""Decoding (brain → embedding, identification, caption retrieval, text → brain) and the one-call encoding API."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmvem.brain import (
    contrast_maps,
    fit_decoder,
    fit_encoding_model,
    identification_accuracy,
    retrieve_captions,
    text_to_brain,
)
from llmvem.data import BrainData
from llmvem.errors import DataError, IdMismatchError


def test_identification_accuracy_by_hand() -> None:
    t = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    res = identification_accuracy(t + 0.01, t, metric="cosine")
    assert res.top1 == 1.0 and res.accuracy == 1.0
    np.testing.assert_array_equal(res.ranks, 1)
    swapped = identification_accuracy(t[[1, 0, 2, 3]], t, metric="cosine")
    assert swapped.top1 == 0.5
    np.testing.assert_array_equal(swapped.ranks[:2], [3, 3])  # behind the swapped twin and [1, 1, 0]
    with pytest.raises(DataError, match="same shape"):
        identification_accuracy(t, t[:3])


def test_retrieve_captions_exact_nearest_neighbours() -> None:
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((50, 8))
    texts = [f"caption {i}" for i in range(50)]
    q = corpus[[3, 17]] + 0.01 * rng.standard_normal((2, 8))
    res = retrieve_captions(q, corpus, texts, k=3, batch=7)
    assert res.texts[0][0] == "caption 3" and res.texts[1][0] == "caption 17"
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (corpus / np.linalg.norm(corpus, axis=1)[:, None]).T
    np.testing.assert_array_equal(res.indices, np.argsort(-sims, axis=1)[:, :3])
    np.testing.assert_allclose(res.scores, np.sort(sims, axis=1)[:, ::-1][:, :3])
    with pytest.raises(DataError, match="captions"):
        retrieve_captions(q, corpus, texts[:-1])


def test_decoder_recovers_embeddings_from_simulated_voxels() -> None:
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((160, 16))
    voxels = emb @ rng.standard_normal((16, 300)) + 0.5 * rng.standard_normal((160, 300))  # v > n: kernel form
    res = fit_decoder(voxels[:120], emb[:120], voxels[120:], emb[120:], alphas=np.logspace(-1, 5, 13))
    assert res.model.form_ == "kernel"
    assert res.r.mean() > 0.8
    assert res.identification.accuracy > 0.95 and res.identification.top1 > 0.5
    shuffled = identification_accuracy(res.predicted, emb[120:][rng.permutation(40)])
    assert shuffled.accuracy < 0.75


def test_text_to_brain_and_contrast() -> None:
    from llmvem.brain import RidgeEncoder

    rng = np.random.default_rng(2)
    emb = rng.standard_normal((100, 6))
    w = np.zeros((6, 10))
    w[0, :5] = 2.0  # voxels 0-4 respond to dimension 0 ("people")
    enc = RidgeEncoder(alphas=(0.1, 1.0, 10.0)).fit(emb, emb @ w + 0.1 * rng.standard_normal((100, 10)))
    people = np.c_[np.full(5, 2.0), rng.standard_normal((5, 5))]
    places = np.c_[np.full(5, -2.0), rng.standard_normal((5, 5))]
    maps = text_to_brain(enc, np.vstack([people, places]))
    assert maps.shape == (10, 10)
    diff, t = contrast_maps(maps, ["people"] * 5 + ["places"] * 5, "people", "places")
    assert (diff[:5] > 6).all() and np.abs(diff[5:]).max() < 1.0
    assert (t[:5] > 10).all()
    with pytest.raises(DataError, match="≥ 2 maps"):
        contrast_maps(maps, ["people"] * 9 + ["places"], "people", "places")


def _brain(n: int = 80, v: int = 12) -> tuple[BrainData, np.ndarray]:
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((n, 5))
    resp = feats @ rng.standard_normal((5, v)) + rng.standard_normal((n, v))
    ids = [f"im{i:03d}" for i in range(n)]
    brain = BrainData(
        responses=resp,
        stimulus_ids=ids,
        voxels=pd.DataFrame({"roi": ["a"] * (v // 2) + ["b"] * (v - v // 2)}),
        ncsnr=np.full(v, 2.0),
        n_repeats=np.full(n, 3),
        splits={"train": ids[:60], "test": ids[60:]},
    )
    return brain, feats


def test_fit_encoding_model_aligns_ids_and_scores() -> None:
    brain, feats = _brain()
    order = np.random.default_rng(4).permutation(80)
    ids = [brain.stimulus_ids[i] for i in order]
    res = fit_encoding_model(feats[order], ids, brain, alphas=(0.1, 1.0, 10.0))
    same = fit_encoding_model(feats, brain.stimulus_ids, brain, alphas=(0.1, 1.0, 10.0))
    np.testing.assert_allclose(res.r, same.r)
    assert res.r.mean() > 0.5
    assert list(res.summary["roi"]) == ["a", "b"]
    assert np.isfinite(res.score).all()


def test_fit_encoding_model_errors() -> None:
    brain, feats = _brain()
    with pytest.raises(IdMismatchError, match="have no features"):
        fit_encoding_model(feats[:70], brain.stimulus_ids[:70], brain)
    with pytest.raises(DataError, match="feature ids"):
        fit_encoding_model(feats, brain.stimulus_ids[:10], brain)
    with pytest.raises(DataError, match="no split"):
        fit_encoding_model(feats, brain.stimulus_ids, brain, test_split="val")
