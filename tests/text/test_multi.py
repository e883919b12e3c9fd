"""Several texts per image: selection by model/prompt, mean (Doerig) or all, real COCO captions, streaming to disk."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmvem.describe.base import Description, Descriptions
from llmvem.errors import ConfigError, DataError, IdMismatchError
from llmvem.store import ArtifactStore
from llmvem.text import (
    EMBEDDINGS_KIND,
    TextEncoder,
    embed_per_image,
    embed_texts,
    embed_to_file,
    load_text_encoder,
    select_texts,
)


@pytest.fixture(scope="module")
def enc() -> TextEncoder:
    return load_text_encoder("minilm")


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def _desc(image: str, model: str, prompt: str, text: str, sample: int = 0) -> Description:
    return Description(image, "h" + image, "import", model, prompt, text, sample=sample)


DESC = Descriptions(
    [
        _desc("b", "m1", "caption", "A zebra grazing."),
        _desc("a", "m1", "caption", "A red apple."),
        _desc("a", "m2", "caption", "An apple on a table."),
        _desc("a", "m1", "detailed", "A shiny red apple lies on a wooden table in soft light."),
        _desc("b", "m2", "caption", "A striped animal."),
        _desc("a", "m1", "caption", "A red apple, close up.", sample=1),
    ]
)


def test_select_by_model_and_prompt() -> None:
    df = select_texts(DESC, ids=["a", "b"], model="m1", prompt="caption")
    assert df[["image", "text"]].values.tolist() == [
        ["a", "A red apple."],
        ["a", "A red apple, close up."],
        ["b", "A zebra grazing."],
    ]
    assert select_texts(DESC, model=["m1", "m2"], prompt="caption")["image"].tolist() == ["b", "b", "a", "a", "a"]
    with pytest.raises(DataError, match=r"no text has model \['m3'\]; the models there are: \['m1', 'm2'\]"):
        select_texts(DESC, model="m3")
    with pytest.raises(IdMismatchError, match=r"1 of 2 id\(s\) have no text with the selected model/prompt: \['b'\]"):
        select_texts(DESC, ids=["a", "b"], prompt="detailed")


def test_mean_and_all(enc: TextEncoder, store: ArtifactStore) -> None:
    mean = embed_per_image(DESC, ids=["a", "b"], model="m1", prompt="caption", encoder=enc, store=store, progress=False)
    rows = embed_texts(["A red apple.", "A red apple, close up.", "A zebra grazing."], encoder=enc, store=store)
    expect = np.stack([rows[:2].mean(0), rows[2]])
    expect /= np.linalg.norm(expect, axis=1, keepdims=True)
    assert mean.ids == ["a", "b"] and mean.n_texts.tolist() == [2, 1] and mean.values.dtype == np.float32
    np.testing.assert_allclose(mean.values, expect, rtol=1e-5, atol=1e-6)
    every = embed_per_image(DESC, model="m1", prompt="caption", aggregate="all", encoder=enc, store=store)
    assert every.ids == ["b", "a", "a"] and every.texts[0] == "A zebra grazing."
    np.testing.assert_array_equal(every.values, rows[[2, 0, 1]])
    with pytest.raises(ConfigError, match="aggregate"):
        embed_per_image(DESC, aggregate="max", encoder=enc, store=store)  # type: ignore[arg-type]


def test_mixing_models_without_selection_warns(
    enc: TextEncoder, store: ArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    out = embed_per_image(DESC, encoder=enc, store=store, progress=False)
    assert out.ids == ["b", "a"] and out.n_texts.tolist() == [2, 4]
    assert "model/prompt combinations" in caplog.text


def test_bad_texts_are_named_by_image(enc: TextEncoder, store: ArtifactStore) -> None:
    df = pd.DataFrame({"image": ["x", "y", "y"], "text": ["fine", "  ", None]})
    with pytest.raises(DataError, match=r"not strings, at ids 'y' \(float\).*empty or whitespace-only, at ids 'y'"):
        embed_per_image(df, encoder=enc, store=store)
    with pytest.raises(DataError, match="columns 'image' and 'text'"):
        embed_per_image(pd.DataFrame({"image": ["x"]}), encoder=enc, store=store)


def test_special100_coco_captions_mean(data_dir: Path, enc: TextEncoder, store: ArtifactStore) -> None:
    """The Doerig recipe on real data: the five COCO captions of each special100 image, embedded and averaged."""
    items = json.loads((data_dir / "nsd_shared1000" / "special100_captions.json").read_text(encoding="utf-8"))
    caps = {it["image"]: it["coco_captions"] for it in items[:40]}
    out = embed_per_image(caps, encoder=enc, store=store, progress=False)
    assert out.values.shape == (40, 384) and out.ids == list(caps) and set(out.n_texts.tolist()) == {5}
    first = embed_texts(caps[out.ids[0]], encoder=enc, store=store)
    m = first.mean(0)
    np.testing.assert_allclose(out.values[0], m / np.linalg.norm(m), rtol=1e-5, atol=1e-6)
    # captions of the same image agree more with their mean than with other images' means
    sims = out.values @ out.values.T
    own = embed_per_image(caps, aggregate="all", encoder=enc, store=store, progress=False)
    match = [int(np.argmax(out.values @ v)) == out.ids.index(i) for v, i in zip(own.values, own.ids, strict=True)]
    assert np.mean(match) > 0.9 and float(np.diag(sims).min()) > 0.999


class _Counter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        original = TextEncoder.encode

        def counting(self_: TextEncoder, texts: Sequence[str], *args: object, **kwargs: object) -> np.ndarray:
            self.calls.append(len(texts))
            return original(self_, texts, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(TextEncoder, "encode", counting)


def test_embed_to_file_streams_blocks(
    enc: TextEncoder, store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"A photo of object number {k}." for k in range(23)]
    counter = _Counter(monkeypatch)
    out = embed_to_file(texts, tmp_path / "e.npy", ids=[f"i{k}" for k in range(23)], encoder=enc, store=store,
                        block_size=10, progress=False)  # fmt: skip
    assert counter.calls == [10, 10, 3]  # one block at a time
    assert isinstance(out.values, np.memmap) and out.values.shape == (23, 384)
    assert (tmp_path / "e.ids.txt").read_text().split() == [f"i{k}" for k in range(23)]
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), embed_texts(texts, encoder=enc, store=store), atol=1e-6)
    assert len(counter.calls) == 3  # the whole list was in the block shards already
    embed_to_file(texts, tmp_path / "f.npy", encoder=enc, store=store, block_size=10, progress=False)
    assert len(counter.calls) == 3 and len(store.entries(EMBEDDINGS_KIND)) == 3  # re-run: lookups only
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(DataError, match="2 ids for 23 texts"):
        embed_to_file(texts, tmp_path / "g.npy", ids=["a", "b"], encoder=enc, store=store)
    with pytest.raises(DataError, match="at positions 1"):
        embed_to_file(["ok", ""], tmp_path / "g.npy", encoder=enc, store=store)
    assert not (tmp_path / "g.npy").exists()
