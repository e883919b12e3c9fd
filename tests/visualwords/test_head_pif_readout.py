"""Vocabulary head, the visual_words alignment loss, PIF features, and the readout of images, voxels and ROIs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmvem.align.losses import ALIGN_LOSSES
from llmvem.errors import DataError
from llmvem.visualwords import (
    BagOfWordsTargets,
    Vocabulary,
    bag_of_words,
    brain_visual_words,
    load_vocabulary,
    pif_features,
    precision_at_k,
    shuffled_precision,
    top_words,
    top_words_merged,
    vocab_head,
    word_masses,
)
from llmvem.visualwords.head import embedding_init


@pytest.fixture(scope="module")
def minilm() -> Vocabulary:
    return load_vocabulary("minilm")


@pytest.mark.parametrize("dim", [8, 24, 40])
def test_embedding_init(dim: int) -> None:
    emb = np.random.default_rng(0).normal(size=(50, 24)).astype(np.float32)
    w = embedding_init(emb, dim)
    assert w.shape == (50, dim)
    if dim == 24:
        np.testing.assert_array_equal(w, emb)
    elif dim > 24:  # a random isometry: token geometry and row norms are kept exactly
        np.testing.assert_allclose(w @ w.T, emb @ emb.T, rtol=1e-4, atol=1e-3)
    else:
        assert np.linalg.matrix_rank(w) == dim
    head = vocab_head(dim, 50, "embeddings", embeddings=emb, prior=np.full(50, 1 / 50))
    torch.testing.assert_close(head.weight.detach(), torch.from_numpy(w))
    with pytest.raises(DataError, match="vocabulary mismatch"):
        vocab_head(dim, 49, "embeddings", embeddings=emb)


def test_prior_bias() -> None:
    prior = np.array([0.5, 0.3, 0.2, 0.0])
    head = vocab_head(6, 4, prior=prior)
    torch.testing.assert_close(head(torch.zeros(1, 6)).softmax(-1)[0], torch.tensor(prior, dtype=torch.float32),
                               atol=1e-6, rtol=0)  # fmt: skip
    with pytest.raises(DataError, match="prior has 3"):
        vocab_head(6, 4, prior=prior[:3])


def test_visual_words_loss_is_kl_target_to_prediction() -> None:
    loss = ALIGN_LOSSES.get("visual_words")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, generator=g)
    target = torch.rand(3, 7, generator=g)
    target[0, :3] = 0  # zeros in the target are fine
    target = target / target.sum(1, keepdim=True)
    q = logits.log_softmax(-1)
    want = np.mean([float(sum(t * (np.log(t) - qq) for t, qq in zip(tr, qr, strict=True) if t > 0))
                    for tr, qr in zip(target.tolist(), q.tolist(), strict=True)])  # fmt: skip
    assert float(loss(logits, target)) == pytest.approx(want, rel=1e-5)
    full = torch.rand(2, 5, generator=g) + 0.1
    full = full / full.sum(1, keepdim=True)
    assert float(loss(full.log() + 3.0, full)) == pytest.approx(0.0, abs=1e-6)  # minimum at softmax = target
    with pytest.raises(DataError, match="vocabulary mismatch"):
        loss(torch.zeros(2, 5), torch.zeros(2, 6))


def test_pif_features() -> None:
    rng = np.random.default_rng(0)
    logits, emb = rng.normal(size=(5, 30)), rng.normal(size=(30, 4)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(pif_features(logits, emb, batch_size=2), p @ emb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pif_features(torch.tensor(p), emb, probabilities=True), p @ emb, rtol=1e-5, atol=1e-6)
    sharp = pif_features(logits, emb, temperature=1e-3)  # τ → 0: the embedding of the arg-max token
    np.testing.assert_allclose(sharp, emb[logits.argmax(1)], atol=1e-4)
    with pytest.raises(DataError, match="vocabulary mismatch"):
        pif_features(logits[:, :29], emb)


def test_top_words_skip_stop_words_pieces_and_specials(minilm: Vocabulary) -> None:
    tid = minilm.tokenizer.convert_tokens_to_ids
    s = np.zeros((2, minilm.size), dtype=np.float32)
    for rank, tok in enumerate(["the", "[CLS]", "##board", "dog", ",", "sofa", "of", "red"]):
        s[0, tid(tok)] = 10 - rank
    s[1, tid("bus")] = 5
    words = top_words(s, minilm, k=3)
    assert words[0] == ["dog", "sofa", "red"] and words[1][0] == "bus"
    allowed = np.zeros(minilm.size, dtype=bool)
    allowed[[tid("sofa"), tid("red")]] = True
    assert top_words(s[:1], minilm, k=3, allowed=allowed) == [["sofa", "red"]]
    with pytest.raises(DataError, match="vocabulary mismatch"):
        top_words(s[:, :-1], minilm)


def test_merged_readout_reads_split_words_as_words(minilm: Vocabulary) -> None:
    texts = ["A man rides a skateboard on the ramp", "A skate shop window with shoes", "A giraffe eats near a fence"]
    bow = BagOfWordsTargets(minilm, "tf").fit(texts)
    assert bow.pieces_["skateboard"] == tuple(minilm.tokenizer.convert_tokens_to_ids(["skate", "##board"]))
    logits = np.log(bow.transform(texts) + 1e-9)  # the targets themselves, as a head that learnt them exactly
    # token readout: the first piece stands for the word (skateboard → skate, giraffe → gi)
    single = top_words(logits, minilm, k=4)
    assert "skate" in single[0] and "skateboard" not in single[0] and "gi" in single[2]
    # word readout: the words of each description, a split word as itself, and `skate` only where it was said
    merged = top_words_merged(logits, minilm, bow.pieces_, k=4)
    assert [set(w) for w in merged] == [{"man", "rides", "skateboard", "ramp"}, {"skate", "shop", "window", "shoes"},
                                        {"giraffe", "eats", "near", "fence"}]  # fmt: skip
    words, mass = word_masses(logits, minilm, bow.pieces_)
    col = {w: j for j, w in enumerate(words)}
    np.testing.assert_allclose(mass[0, col["skateboard"]], 0.25, atol=1e-4)  # each of 4 content words weighs 1/4
    assert mass[0, col["skate"]] < 1e-4 and mass[1, col["skate"]] == pytest.approx(0.25, abs=1e-4)
    assert top_words_merged(logits, minilm, {}, k=4) == top_words(logits, minilm, k=4)  # no multi-piece words
    with pytest.raises(DataError, match="outside the vocabulary"):
        word_masses(logits, minilm, {"xx": [0, minilm.size + 5]})
    with pytest.raises(DataError, match="k must be"):
        top_words_merged(logits, minilm, bow.pieces_, k=0)


def test_precision_and_shuffled_baseline() -> None:
    refs = [{"dog", "sofa", "red"}, {"bus", "street"}, {"cat", "bed"}, {"apple", "table"}]
    pred = [["dog", "sofa", "x"], ["bus", "y", "z"], ["cat", "bed", "red"], ["apple", "q", "w"]]
    np.testing.assert_allclose(precision_at_k(pred, refs, k=3), [2 / 3, 1 / 3, 2 / 3, 1 / 3])
    res = shuffled_precision(pred, refs, k=3, n_shuffles=500, seed=0)
    assert res.precision == pytest.approx(0.5)
    # a random pairing hits its own description with probability 1/4, plus "red" of image 2 against image 0
    assert res.shuffled_mean == pytest.approx(0.25 * 0.5 + (1 / 4) * (1 / 3) / 4, abs=0.03)
    assert res.p_value < 0.05 and res.as_dict()["ratio"] > 3
    same = shuffled_precision([["dog"]] * 4, [{"dog"}] * 4, k=1, n_shuffles=50)  # no image-specific information
    assert same.precision == same.shuffled_mean == 1.0 and same.p_value == 1.0


def test_voxels_and_rois_say_the_words_that_drive_them(minilm: Vocabulary) -> None:
    """Simulated cortex: an 'animal' ROI responds to which animal is shown, a 'colour' ROI to the colour."""
    rng = np.random.default_rng(0)
    animals, colours, things = ["dog", "cat", "horse", "bird"], ["red", "green", "blue", "yellow"], ["car", "chair"]
    n = 240
    a = rng.integers(0, 4, n)
    c = rng.integers(0, 4, n)
    t = rng.integers(0, 2, n)
    has_animal = rng.random(n) < 0.5
    texts = [
        (f"A {colours[c[i]]} {animals[a[i]]} next to a {things[t[i]]}." if has_animal[i]
         else f"A {colours[c[i]]} {things[t[i]]} in a room.")
        for i in range(n)
    ]  # fmt: skip
    pif = pif_features(bag_of_words(texts, minilm), minilm.embeddings, probabilities=True)
    animal_drive = np.where(has_animal, (a + 1.0), 0.0)  # each animal voxel: graded by which animal
    colour_drive = (c == 0) * 2.0 + (c == 3) * 1.0  # red and yellow drive the colour voxels
    y = np.concatenate(
        [animal_drive[:, None] * rng.uniform(0.5, 1.5, 20) + rng.normal(0, 0.5, (n, 20)),
         colour_drive[:, None] * rng.uniform(0.5, 1.5, 20) + rng.normal(0, 0.5, (n, 20))], axis=1,
    )  # fmt: skip
    rois = ["animal"] * 20 + ["colour"] * 20
    seen = bag_of_words(texts, minilm).sum(0) > 0
    res = brain_visual_words(pif, y, rois, minilm, k=3, train_idx=np.arange(180), test_idx=np.arange(180, n),
                             allowed=seen)  # fmt: skip
    assert np.nanmean(res.r[:20]) > 0.5 and np.nanmean(res.r[20:]) > 0.3
    assert res.roi_words["animal"][0] == "bird"  # the animal that drives it most
    assert set(res.roi_words["animal"]) <= set(animals)
    assert res.roi_words["colour"][0] == "red" and "yellow" in res.roi_words["colour"][:2]
    assert len(res.voxel_words) == 40 and all(len(w) == 3 for w in res.voxel_words)
    assert np.mean([w[0] == "bird" for w in res.voxel_words[:20]]) > 0.8
    assert res.n_voxels_used["animal"] >= 15
    with pytest.raises(DataError, match="240 PIF rows but 10"):
        brain_visual_words(pif, y[:10], rois, minilm)
    with pytest.raises(DataError, match="features are 383-d"):
        brain_visual_words(pif[:, :-1], y, rois, minilm)
