"""Cached text embeddings: texts → (n, d) float32, with a per-text cache.

Caching (artifact kind ``"text_embeddings"``)
---------------------------------------------
Embeddings are cached per text, not per list: each call stores one *shard* holding the raw (unnormalised)
embeddings of the texts it had to compute, with their SHA-256 text hashes. A later call looks its texts up in the
shards made with the same encoder identity and long-text policy, and computes only the ones it does not find. So
re-embedding the same list, a subset, a superset or a reordering costs nothing for texts seen before, and the store
holds each text once per (encoder, policy). A call whose texts were all computed together by one earlier call finds
its shard by key directly, without listing the store.

The shard key is the hash of the encoder identity (name, model, file hashes, window), the policy (for models with
a token window) and the ordered text hashes. ``normalize`` is applied after reading, so normalised and raw embeddings
share the cache.

Many texts (:func:`embed_to_file`) are embedded in blocks written into a memory-mapped ``.npy``, so memory stays
bounded by the block size whatever the number of texts; each block is one shard, so a re-run is one lookup per block.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.errors import BackendError, ConfigError, DataError, IdMismatchError
from llmvem.hashing import artifact_key, hash_many, hash_text
from llmvem.store import ArtifactStore
from llmvem.text.embeddings import TextEmbeddings
from llmvem.text.encoders import POLICIES, EmbedStats, Policy, TextEncoder, load_text_encoder

log = logging.getLogger(__name__)

EMBEDDINGS_KIND = "text_embeddings"
_SPEC_VERSION = 1  # bump when the embedding code changes what it computes


def embed_texts(
    texts: Sequence[str],
    encoder: str | TextEncoder = "minilm",
    normalize: bool = True,
    policy: Policy = "chunk",
    batch_size: int = 64,
    device: str = "cpu",
    store: ArtifactStore | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embed texts: (n, d) float32, row k for ``texts[k]``; unit-length rows if ``normalize``.

    Args:
        texts: non-empty strings.
        encoder: a registry name (``"minilm"``, ``"sentence-transformers:<ref>"``) or a loaded :class:`TextEncoder`.
        normalize: scale each row to unit L2 norm.
        policy: texts longer than the model's window: ``"chunk"`` (embed all chunks, token-weighted mean) or
            ``"truncate"`` (the model cuts them; a warning says how many).
        batch_size: sequences per forward pass.
        device: torch device for an encoder given by name.
        store: artifact store; default ``ArtifactStore()``.
        progress: show a progress bar (stderr) while computing.

    Raises:
        DataError: some texts are not strings, or empty / whitespace-only (the message gives their positions).
    """
    items = check_texts(texts)
    labels = [str(k) for k in range(len(items))]
    return _embed(items, labels, encoder, normalize, policy, batch_size, device, store, progress)[0]


def embed_text_sources(sources: Sequence[Sequence[str]], **embed_kw: Any) -> np.ndarray:
    """One target from several text sources of the same images (describers × prompts): each source's texts
    embedded (:func:`embed_texts`, unit-length rows), then their mean re-normalised to unit length; with one source,
    that source's embeddings.

    Args:
        sources: ``k`` lists of ``n`` texts, row ``i`` of every list about image ``i``.
        embed_kw: :func:`embed_texts` keywords.
    Returns:
        (n, d) float32.
    """
    if not sources:
        raise DataError("embed_text_sources: no text source")
    embs = [embed_texts(list(texts), **embed_kw) for texts in sources]
    target = np.mean(embs, axis=0) if len(embs) > 1 else embs[0]
    if len(embs) > 1:
        target = target / np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
    return np.asarray(target, dtype=np.float32)


def embed_descriptions(
    descriptions: Mapping[str, str],
    ids: Sequence[str],
    encoder: str | TextEncoder = "minilm",
    normalize: bool = True,
    policy: Policy = "chunk",
    batch_size: int = 64,
    device: str = "cpu",
    store: ArtifactStore | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embed one description per stimulus: (len(ids), d) float32, row k for ``descriptions[ids[k]]``.

    Raises:
        IdMismatchError: some ids have no description (the message names them).
        DataError: some descriptions are empty or not strings (the message names their ids).
    """
    ids = [str(i) for i in ids]
    missing = [i for i in ids if i not in descriptions]
    if missing:
        raise IdMismatchError(
            f"{len(missing)} of {len(ids)} stimulus id(s) have no description: {missing[:10]}"
            + (" ..." if len(missing) > 10 else "")
        )
    texts = [descriptions[i] for i in ids]
    items = check_texts(texts, labels=ids)
    return _embed(items, ids, encoder, normalize, policy, batch_size, device, store, progress)[0]


def embed_to_file(
    texts: Sequence[str],
    out: str | Path,
    ids: Sequence[str] | None = None,
    encoder: str | TextEncoder = "minilm",
    normalize: bool = True,
    policy: Policy = "chunk",
    batch_size: int = 64,
    device: str = "cpu",
    store: ArtifactStore | None = None,
    progress: bool = True,
    block_size: int = 8192,
) -> TextEmbeddings:
    """Embed many texts straight into ``out`` (.npy, (n, d) float32) and ``<out>.ids.txt``, in bounded memory.

    Texts are embedded ``block_size`` at a time (each block cached like :func:`embed_texts`) and written into the
    ``.npy`` file, which is renamed into place when complete, so memory use does not grow with ``len(texts)``.

    Args:
        ids: one id per text for the ``.ids.txt`` index (default: ``"0"``, ``"1"`` ...).

    Returns:
        The embeddings, memory-mapped read-only from ``out``, with their ids.

    Raises:
        DataError: bad texts (named by id or position); ``ids`` of the wrong length.
    """
    from llmvem.data.files import check_writable_ids, write_ids

    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    labels = [str(k) for k in range(len(texts))] if ids is None else [str(i) for i in ids]
    if len(labels) != len(texts):
        raise DataError(f"{len(labels)} ids for {len(texts)} texts; give one id per text")
    check_texts(texts, labels=labels if ids is not None else None)
    check_writable_ids(labels, f"embeddings {out}")  # before the work: the .ids.txt must round-trip
    enc = load_text_encoder(encoder, device=device) if isinstance(encoder, str) else encoder
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fh = None
    offset = 0
    try:
        for start in range(0, len(texts), block_size):
            block = list(texts[start : start + block_size])
            emb, _ = _embed(
                block, labels[start : start + block_size], enc, normalize, policy, batch_size, device, store, progress
            )
            if fh is None:  # the .npy header, then rows written with plain writes (no dirty mapped pages in RSS)
                header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(texts), emb.shape[1]))
                offset = int(header.offset)
                del header
                fh = open(tmp, "r+b")  # noqa: SIM115  # closed in finally
            fh.seek(offset + start * emb.shape[1] * 4)
            fh.write(np.ascontiguousarray(emb, dtype="<f4").tobytes())
            del emb
        assert fh is not None
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        fh = None
        os.replace(tmp, out)
    finally:
        if fh is not None:
            fh.close()
        if tmp.exists():
            tmp.unlink()
    write_ids(out.with_suffix(".ids.txt"), labels, f"embeddings {out}")
    return TextEmbeddings(values=np.load(out, mmap_mode="r"), ids=labels, encoder=enc.name)


def check_texts(texts: Sequence[Any], labels: Sequence[str] | None = None) -> list[str]:
    """Return ``texts`` as a list of strings, or raise :class:`DataError` naming every bad one.

    A bad text is one that is not a ``str`` (``None``, a NaN from a table, bytes ...) or is empty / whitespace-only.
    Bad texts are named by position, or by ``labels[k]`` (e.g. stimulus ids) when given.
    """
    if isinstance(texts, str | bytes):
        raise DataError("expected a sequence of texts, got a single string; wrap it in a list")
    items = list(texts)
    if not items:
        raise DataError("no texts to embed (got an empty sequence)")

    def name(k: int) -> str:
        return repr(labels[k]) if labels is not None else str(k)

    where = "ids" if labels is not None else "positions"
    problems = []
    not_str = [k for k, t in enumerate(items) if not isinstance(t, str)]
    if not_str:
        shown = ", ".join(f"{name(k)} ({type(items[k]).__name__})" for k in not_str[:10])
        more = " ..." if len(not_str) > 10 else ""
        problems.append(f"{len(not_str)} text(s) are not strings, at {where} {shown}{more}")
    blank = [k for k, t in enumerate(items) if isinstance(t, str) and not t.strip()]
    if blank:
        shown = ", ".join(name(k) for k in blank[:10])
        more = " ..." if len(blank) > 10 else ""
        problems.append(f"{len(blank)} text(s) are empty or whitespace-only, at {where} {shown}{more}")
    if problems:
        raise DataError("; ".join(problems) + ". Remove or fill them before embedding.")
    return items


def _embed(
    texts: list[str],
    labels: list[str],
    encoder: str | TextEncoder,
    normalize: bool,
    policy: Policy,
    batch_size: int,
    device: str,
    store: ArtifactStore | None,
    progress: bool,
) -> tuple[np.ndarray, EmbedStats]:
    """(n, d) float32 embeddings of ``texts`` (checked already) and what happened to the texts computed now."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown long-text policy {policy!r}; use one of {', '.join(POLICIES)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    enc = load_text_encoder(encoder, device=device) if isinstance(encoder, str) else encoder
    store = store if store is not None else ArtifactStore()

    hashes = [hash_text(t) for t in texts]
    unique = dict(zip(hashes, texts, strict=True))  # first occurrence order, duplicates once
    # the policy matters only to models with a token window
    config = {"version": _SPEC_VERSION, "encoder": enc.identity, "policy": policy if enc.windowed else None}
    found = _cached_rows(store, config, list(unique))
    todo = [h for h in unique if h not in found]
    stats = EmbedStats(n_texts=0)
    if todo:
        log.info("text embeddings (%s, %s): %d cached, %d to compute", enc.name, policy, len(found), len(todo))
        emb, stats = enc.embed([unique[h] for h in todo], policy=policy, batch_size=batch_size, progress=progress)
        bad_rows = np.flatnonzero(~np.isfinite(emb).all(axis=1))
        if bad_rows.size:
            bad_hashes = {todo[r] for r in bad_rows}
            bad = [labels[k] for k, h in enumerate(hashes) if h in bad_hashes]
            raise BackendError(f"text encoder {enc.name} produced non-finite embeddings for texts {bad[:10]}")
        store.put_arrays(
            EMBEDDINGS_KIND,
            _shard_spec(config, todo),
            {"embeddings": emb, "text_hashes": np.asarray(todo, dtype="U64")},
            extra={"config": artifact_key(config), "encoder": enc.name, "policy": policy, "stats": stats.as_dict()},
        )
        found.update(zip(todo, emb, strict=True))
    out = np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    return out, stats


def _shard_spec(config: Mapping[str, Any], hashes: Sequence[str]) -> dict[str, Any]:
    return {**config, "texts": hash_many(hashes), "n_texts": len(hashes)}


def _cached_rows(store: ArtifactStore, config: Mapping[str, Any], wanted: list[str]) -> dict[str, np.ndarray]:
    """Cached raw embeddings of the text hashes ``wanted`` for ``config``: hash → (d,) float32 (missing ones absent)."""
    key = store.key(EMBEDDINGS_KIND, _shard_spec(config, wanted))
    if store.has(EMBEDDINGS_KIND, key):  # the whole set was computed together before
        arrays = store.get_arrays(EMBEDDINGS_KIND, key)
        return dict(zip(arrays["text_hashes"].tolist(), np.asarray(arrays["embeddings"]), strict=True))
    config_key = artifact_key(config)
    need = set(wanted)
    found: dict[str, np.ndarray] = {}
    for entry in store.entries(EMBEDDINGS_KIND):
        if store.get_extra(EMBEDDINGS_KIND, entry.key).get("config") != config_key:
            continue
        arrays = store.get_arrays(EMBEDDINGS_KIND, entry.key, mmap=True)
        for row, h in enumerate(arrays["text_hashes"].tolist()):
            if h in need:
                found[h] = np.array(arrays["embeddings"][row], dtype=np.float32)
                need.discard(h)
        if not need:
            break
    return found
