"""visual_words in the trainer: vocabulary head, KL to bag-of-words targets, mismatches, shared twins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmvem.align.finetune import FinetuneData, build_model, finetune
from llmvem.config import FinetuneConfig
from llmvem.errors import DataError
from llmvem.vision.trainable import split_backbone
from llmvem.visualwords import Vocabulary, bag_of_words, load_vocabulary, top_words

WORDS = ["dog", "cat", "bus", "apple", "boat", "tree", "horse", "pizza"]


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return split_backbone("efficientnet_lite0", trainable_blocks=1)


@pytest.fixture(scope="module")
def minilm() -> Vocabulary:
    return load_vocabulary("minilm")


@pytest.fixture(scope="module")
def tiny_vocab(tmp_path_factory: pytest.TempPathFactory) -> Vocabulary:
    """A local model directory: a WordPiece tokenizer trained here and a safetensors token-embedding table."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    corpus = [f"a photo of a {w} in the scene with grass and sky" for w in WORDS] * 10
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", "[PAD]"]))
    folder = tmp_path_factory.mktemp("tiny-vocab")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(folder)
    emb = np.random.default_rng(0).normal(size=(tok.get_vocab_size(), 16)).astype(np.float32)
    save_file({"embeddings.word_embeddings.weight": emb}, str(folder / "model.safetensors"))
    vocab = load_vocabulary(str(folder))
    np.testing.assert_array_equal(vocab.embeddings, emb)
    return vocab


@pytest.fixture(scope="module")
def data(split, tiny_vocab: Vocabulary) -> tuple[FinetuneData, list[str]]:  # type: ignore[no-untyped-def]
    """32 images of 8 kinds; an image's activations carry its kind, its description names it."""
    rng = np.random.default_rng(0)
    kind = np.arange(32) % 8
    with torch.inference_mode():
        acts = split.bottom(torch.from_numpy(rng.normal(size=(32, 3, 224, 224)).astype(np.float32))).numpy()
    for k in range(8):  # the kind, written into 8 channels of the frozen bottom's output
        acts[kind == k, 8 * k : 8 * k + 8] += 3.0
    texts = [f"A photo of a {WORDS[k]} in the scene." for k in kind]
    return FinetuneData(acts, bag_of_words(texts, tiny_vocab), (rng.random((32, 4)) < 0.5).astype(np.float32)), texts


CFG = dict(loss="visual_words", epochs=8, batch_size=8, warmup_epochs=0, lr=1e-3, seeds=[0], weight_decay=0.0)
TRAIN, VAL = np.arange(24), np.arange(24, 32)


def test_vocabulary_head_learns_the_descriptions_words(split, data, tiny_vocab: Vocabulary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fd, _ = data
    cfg = FinetuneConfig(**CFG, vocabulary=str(tiny_vocab.tokenizer.name_or_path))  # type: ignore[arg-type]
    prior = fd.text[TRAIN].mean(0)
    model = build_model(split, cfg, tiny_vocab.size, None, "none", text_prior=prior)
    assert model.project.weight.shape == (tiny_vocab.size, 1280)  # Linear(feature → vocabulary)
    w = model.project.weight.detach().numpy().astype(np.float64)  # rows: the token embeddings through an isometry
    emb = tiny_vocab.embeddings.astype(np.float64)
    np.testing.assert_allclose(w @ w.T, emb @ emb.T, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.project(torch.zeros(1, 1280)).softmax(-1)[0].double(),
                               torch.from_numpy(prior).double(), atol=1e-6, rtol=0)  # fmt: skip
    res = finetune(split, fd, TRAIN, VAL, cfg, 1.0, "none", seed=0, ckpt_dir=tmp_path)
    losses = [h["train_align"] for h in res.history]
    assert losses[-1] < 0.5 * losses[0], losses
    model.load_state_dict(res.state)
    model.train()  # batch statistics, as in training (BatchNorm running means move slowly: momentum 0.01)
    with torch.no_grad():
        logits = model(torch.from_numpy(fd.activations))["projection"].numpy()
    top = top_words(logits, tiny_vocab, k=3)  # "photo" and "scene" are in every description
    own = [WORDS[j % 8] in w for j, w in enumerate(top)]
    assert np.mean(own[:24]) > 0.9, top  # training images: their kind is among their top 3 words (chance ≤ 3/8)


def test_targets_of_another_vocabulary_are_a_clear_error(split, data, minilm: Vocabulary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fd, _ = data  # targets over the tiny vocabulary, head over MiniLM's (the default)
    other = FinetuneData(fd.activations, fd.text, fd.targets)
    want = f"vocabulary mismatch: the visual-word targets .* {fd.text.shape[1]} entries .* 30522"
    with pytest.raises(DataError, match=want):
        finetune(split, other, TRAIN, VAL, FinetuneConfig(**CFG), 1.0, "none", seed=0, ckpt_dir=tmp_path)  # type: ignore[arg-type]


def test_the_twin_is_shared_across_alignment_losses(split, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fd, _ = data
    base = {**CFG, "epochs": 1}
    a = finetune(split, fd, TRAIN, VAL, FinetuneConfig(**{**base, "loss": "infonce"}), 0.0, "multilabel", seed=0,
                 ckpt_dir=tmp_path)  # type: ignore[arg-type]  # fmt: skip
    stamp = (tmp_path / "metrics.csv").stat().st_mtime_ns
    b = finetune(split, fd, TRAIN, VAL, FinetuneConfig(**base), 0.0, "multilabel", seed=0, ckpt_dir=tmp_path)  # type: ignore[arg-type]
    assert (tmp_path / "metrics.csv").stat().st_mtime_ns == stamp  # reused, not retrained
    assert a.history == b.history and "project.weight" not in b.state
