"""CLIP text encoders on tiny randomly initialised models built from a config (Hugging Face CLIP and open_clip).

The Hugging Face tokenizer is a real byte-level BPE CLIPTokenizer with a tiny vocabulary written here; the open_clip
one is open_clip's own SimpleTokenizer with its bundled OpenAI vocabulary. A forward hook on the token-embedding
layer records exactly which token ids reach the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmvem.errors import BackendError
from llmvem.hashing import artifact_key
from llmvem.store import ArtifactStore
from llmvem.text import (
    EMBEDDINGS_KIND,
    HFClipTextEncoder,
    OpenClipTextEncoder,
    embed_texts,
    load_text_encoder,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SENTENCE = "The cat sat on the mat and then the cat ate the hat."
LONG = " ".join(f"The cat number {k} sat on a mat near the door." for k in range(12))  # 12 sentences, > 77 tokens
RUN_ON = " ".join(["then the cat sat"] * 40)  # one 'sentence' with no punctuation, > 77 tokens


def _tiny_clip_dir(root: Path, kind: str = "clip", seed: int = 0) -> Path:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    vocab = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]
    merges = [("t", "h"), ("th", "e</w>"), ("c", "a"), ("ca", "t</w>"), ("a", "t</w>"), ("s", "at</w>")]
    vocab += ["".join(m) for m in merges]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    torch.manual_seed(seed)
    if kind == "clip":
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
        cfg = CLIPConfig(text_config=text, vision_config={**vision, "image_size": 32, "patch_size": 16})
        cfg.projection_dim = 16
        model: Any = CLIPModel(cfg)
    else:
        model = CLIPTextModelWithProjection(CLIPTextConfig(**text, projection_dim=16))
    out = root / f"{kind}-{seed}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_clip_dir(tmp_path_factory.mktemp("hfclip"))


@pytest.fixture(scope="module")
def open_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("open_clip")
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("openclip")
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    torch.manual_seed(0)
    save_file(CLIP(**model_cfg).state_dict(), str(d / "open_clip_model.safetensors"))
    return d


class _Seen:
    """Records the token ids (padding excluded) of every sequence that reaches the token-embedding layer."""

    def __init__(self, enc: Any) -> None:
        self.sequences: list[list[int]] = []
        enc.load()
        self.handle = enc.token_embedding().register_forward_hook(self._hook)
        tok = enc.tokenizer
        self.eos = int(tok.eos_token_id) if hasattr(tok, "eos_token_id") else int(tok.eot_token_id)

    def _hook(self, module: Any, args: tuple[Any, ...], output: Any) -> None:
        for row in args[0].tolist():
            end = row.index(self.eos) + 1  # the first end token closes the sequence; the rest is padding
            self.sequences.append(row[:end])


@pytest.fixture
def seen_hf(clip_dir: Path) -> Iterator[tuple[HFClipTextEncoder, _Seen]]:
    enc = load_text_encoder(f"clip:{clip_dir}")
    assert isinstance(enc, HFClipTextEncoder)
    seen = _Seen(enc)
    yield enc, seen
    seen.handle.remove()


def test_hf_clip_matches_the_model_and_has_an_identity(clip_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, CLIPModel

    enc = load_text_encoder(f"clip:{clip_dir}")
    assert enc.max_tokens == 77 and enc.token_budget == 75 and enc.dim == 16
    assert enc.identity["kind"] == "CLIPModel" and "model.safetensors" in enc.identity["files"]
    texts = ["the cat", SENTENCE, "a hat"]
    got = embed_texts(texts, encoder=enc, normalize=False, store=ArtifactStore(tmp_path), progress=False)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    tok = AutoTokenizer.from_pretrained(clip_dir)
    with torch.no_grad():
        ref = [model.get_text_features(**tok([t], return_tensors="pt")).pooler_output[0].numpy() for t in texts]
    np.testing.assert_allclose(got, np.stack(ref), rtol=1e-4, atol=1e-5)  # batching + padding change nothing
    other = load_text_encoder(f"clip:{_tiny_clip_dir(tmp_path, seed=1)}")
    assert artifact_key(other.identity) != artifact_key(enc.identity)  # new weights, new identity


def test_hf_clip_text_model_with_projection(tmp_path: Path) -> None:
    enc = load_text_encoder(f"clip:{_tiny_clip_dir(tmp_path, kind='text')}")
    assert enc.identity["kind"] == "CLIPTextModelWithProjection"
    emb, _ = enc.embed(["the cat", "the hat"])
    assert emb.shape == (2, 16) and emb.dtype == np.float32 and np.isfinite(emb).all()


def test_hf_clip_truncate_sends_the_first_75_tokens(
    seen_hf: tuple[HFClipTextEncoder, _Seen], caplog: pytest.LogCaptureFixture
) -> None:
    enc, seen = seen_hf
    ids = enc.tokenizer(LONG, add_special_tokens=False)["input_ids"]
    assert len(ids) > 150
    _, stats = enc.embed([LONG, "the cat"], policy="truncate")
    bos, eos = enc.tokenizer.bos_token_id, enc.tokenizer.eos_token_id
    short = enc.tokenizer("the cat", add_special_tokens=False)["input_ids"]
    assert sorted(seen.sequences, key=len) == [[bos, *short, eos], [bos, *ids[:75], eos]]
    assert stats.n_truncated == 1 and stats.n_tokens_dropped == len(ids) - 75 == stats.max_dropped
    assert "dropping" in caplog.text


@pytest.mark.parametrize("text", [LONG, RUN_ON], ids=["sentences", "run_on"])
def test_hf_clip_chunk_sends_every_token_once(seen_hf: tuple[HFClipTextEncoder, _Seen], text: str) -> None:
    enc, seen = seen_hf
    ids = enc.tokenizer(text, add_special_tokens=False)["input_ids"]
    emb, stats = enc.embed([text], policy="chunk")
    bos, eos = enc.tokenizer.bos_token_id, enc.tokenizer.eos_token_id
    assert stats.n_chunks == len(seen.sequences) >= 2 and stats.n_truncated == 0
    assert all(len(s) <= 77 and s[0] == bos and s[-1] == eos for s in seen.sequences)
    # the sequences are sent longest first; in text order their content tokens are the whole text, once
    spans = enc.chunk_spans(text)
    chunk_ids = [enc.tokenizer(text[a:b], add_special_tokens=False)["input_ids"] for a, b in spans]
    assert sorted(map(tuple, (s[1:-1] for s in seen.sequences))) == sorted(map(tuple, chunk_ids))
    assert [t for c in chunk_ids for t in c] == ids
    parts, _ = enc.embed([text[a:b] for a, b in spans], policy="truncate")
    w = np.array([len(c) for c in chunk_ids], dtype=np.float64)
    np.testing.assert_allclose(emb[0], (parts * w[:, None]).sum(0) / w.sum(), rtol=1e-4, atol=1e-6)


def test_hf_clip_cache_hit_and_invalidation(clip_dir: Path, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    enc = load_text_encoder(f"clip:{clip_dir}")
    seen = _Seen(enc)
    first = embed_texts([LONG, "the cat"], encoder=enc, store=store, progress=False)
    n = len(seen.sequences)
    again = embed_texts([LONG, "the cat"], encoder=enc, store=store, progress=False)
    assert len(seen.sequences) == n and np.array_equal(first, again)  # a lookup
    embed_texts([LONG, "the cat"], encoder=enc, policy="truncate", store=store, progress=False)
    assert len(seen.sequences) == n + 2  # another policy: computed again
    assert len(store.entries(EMBEDDINGS_KIND)) == 2


def test_hf_clip_errors(tmp_path: Path) -> None:
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(BackendError, match="expected a CLIP model"):
        load_text_encoder(f"clip:{tmp_path / 'bert'}")
    with pytest.raises(BackendError, match="not in the local Hugging Face cache"):
        load_text_encoder("clip:llmvem-test/no-such-clip")
    with pytest.raises(BackendError, match="give a hub id"):
        load_text_encoder("clip:")


def test_open_clip_matches_the_model(open_clip_dir: Path, tmp_path: Path) -> None:
    import open_clip

    enc = load_text_encoder(f"open_clip:{open_clip_dir}")
    assert isinstance(enc, OpenClipTextEncoder)
    assert enc.max_tokens == 77 and enc.token_budget == 75 and enc.dim == 16
    assert "open_clip_model.safetensors" in enc.identity["files"]
    texts = ["a photo of a cat", SENTENCE]
    got = embed_texts(texts, encoder=enc, normalize=False, store=ArtifactStore(tmp_path), progress=False)
    model = open_clip.create_model(f"local-dir:{open_clip_dir}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{open_clip_dir}")
    with torch.no_grad():
        ref = model.encode_text(tok(texts)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("text", [LONG, RUN_ON], ids=["sentences", "run_on"])
def test_open_clip_chunk_and_truncate_tokens(open_clip_dir: Path, text: str) -> None:
    enc = load_text_encoder(f"open_clip:{open_clip_dir}")
    assert isinstance(enc, OpenClipTextEncoder)
    seen = _Seen(enc)
    ids = enc.tokenizer.encode(text)
    sot, eot = enc.tokenizer.sot_token_id, enc.tokenizer.eot_token_id
    _, stats = enc.embed([text], policy="chunk")
    assert stats.n_chunks >= 2 and stats.n_truncated == 0
    assert all(len(s) <= 77 and s[0] == sot and s[-1] == eot for s in seen.sequences)
    spans = enc.chunk_spans(text)  # no offsets here: over-long sentences are cut between words
    chunk_ids = [enc.tokenizer.encode(text[a:b]) for a, b in spans]
    assert [t for c in chunk_ids for t in c] == ids
    assert sorted(tuple(s[1:-1]) for s in seen.sequences) == sorted(map(tuple, chunk_ids))
    seen.sequences.clear()
    _, stats = enc.embed([text], policy="truncate")
    assert seen.sequences == [[sot, *ids[:75], eot]] and stats.n_tokens_dropped == len(ids) - 75


def test_open_clip_errors(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    with pytest.raises(BackendError, match=r"open_clip_config\.json"):
        load_text_encoder(f"open_clip:{tmp_path}")
    with pytest.raises(BackendError, match=r"not in the local\s+Hugging Face cache"):
        load_text_encoder("open_clip:ViT-B-32:laion2b_s34b_b79k")
    with pytest.raises(BackendError, match="not an open_clip architecture"):
        load_text_encoder("open_clip:NoSuchNet:foo")
