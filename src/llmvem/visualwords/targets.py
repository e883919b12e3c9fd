"""Visual-word targets from descriptions: each text's distribution over a vocabulary's tokens (bag of words).

A text's content words (subword tokens merged into words, stop words, punctuation and digits removed; see
:mod:`llmvem.visualwords.vocab`) are counted; with ``weighting="tfidf"`` each count is multiplied by the word's
smoothed inverse document frequency over the fitted texts, ``idf(w) = ln((1 + n) / (1 + df(w))) + 1`` (as
scikit-learn's ``TfidfTransformer(smooth_idf=True)``). A word's weight is shared equally by its tokens
(``skateboard`` = ``skate`` + ``##board``: half each), and each row is normalised to sum to 1.

Example
-------
>>> from llmvem.visualwords import BagOfWordsTargets, load_vocabulary  # doctest: +SKIP
>>> bow = BagOfWordsTargets(load_vocabulary("minilm"), weighting="tfidf").fit(train_texts)  # doctest: +SKIP
>>> y = bow.transform(texts, ids=image_ids)  # (n, 30522) float32, rows sum to 1  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np

from llmvem.errors import ConfigError, DataError
from llmvem.visualwords.vocab import Vocabulary

Weighting = Literal["tf", "tfidf"]
WEIGHTINGS = ("tf", "tfidf")


class BagOfWordsTargets:
    """Texts → (n, V) token distributions (rows sum to 1); sklearn-style ``fit`` (document frequencies) and
    ``transform``.

    Args:
        vocab: the vocabulary whose tokens the distributions are over.
        weighting: ``"tf"`` (word counts) or ``"tfidf"`` (counts × smoothed idf of the fitted texts).

    Attributes:
        idf_: word → idf (after :meth:`fit`, ``"tfidf"`` only); n_documents_: texts fitted; pieces_: each content
        word of the fitted texts → its token ids (as first seen), for :func:`~llmvem.visualwords.top_words_merged`.
    """

    def __init__(self, vocab: Vocabulary, weighting: Weighting = "tf") -> None:
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown bag-of-words weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        self.vocab = vocab
        self.weighting = weighting

    def fit(self, texts: Sequence[str]) -> BagOfWordsTargets:
        """Learn document frequencies from ``texts`` (needed for ``"tfidf"``; harmless for ``"tf"``)."""
        df: Counter[str] = Counter()
        self.pieces_: dict[str, tuple[int, ...]] = {}
        for t in texts:
            words = self._words(t)
            df.update({w for w, _ in words})
            for w, ids in words:
                self.pieces_.setdefault(w, tuple(ids))
        n = len(texts)
        self.n_documents_ = n
        self.idf_ = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
        self._idf_unseen = math.log(1 + n) + 1.0
        return self

    def _words(self, text: str) -> list[tuple[str, list[int]]]:
        return [(w, ids) for w, ids in self.vocab.split_words(text) if self.vocab.is_content(w)]

    def transform(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> np.ndarray:
        """The token distribution of each text: (n, V) float32, every row sums to 1.

        Args:
            texts: one text per image.
            ids: the image id of each text, used to name an offending text in errors.
        Raises:
            DataError: a text has no content word (empty, only stop words, punctuation or digits); the message
                names its image id (or index).
        """
        if ids is not None and len(ids) != len(texts):
            raise DataError(f"bag-of-words targets: {len(ids)} ids for {len(texts)} texts")
        if self.weighting == "tfidf" and not hasattr(self, "idf_"):
            raise DataError("bag-of-words targets with tf-idf weighting: call fit(texts) before transform")
        out = np.zeros((len(texts), self.vocab.size), dtype=np.float32)
        empty: list[str] = []
        for row, text in enumerate(texts):
            words = self._words(text if isinstance(text, str) else "")
            if not words:
                empty.append(str(ids[row]) if ids is not None else f"#{row}")
                continue
            for word, pieces in words:
                w = self.idf_.get(word, self._idf_unseen) if self.weighting == "tfidf" else 1.0
                for p in pieces:
                    out[row, p] += w / len(pieces)
            out[row] /= out[row].sum()
        if empty:
            raise DataError(
                f"{len(empty)} text(s) have no content word to make a visual-word target from (empty, or only stop "
                f"words, punctuation and digits): {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}"
            )
        return out

    def fit_transform(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> np.ndarray:
        return self.fit(texts).transform(texts, ids)


def bag_of_words(
    texts: Sequence[str], vocab: Vocabulary, weighting: Weighting = "tf", ids: Sequence[str] | None = None
) -> np.ndarray:
    """Functional form: (n, V) float32 token distributions of ``texts`` (idf fitted on the same texts)."""
    return BagOfWordsTargets(vocab, weighting).fit_transform(texts, ids)
