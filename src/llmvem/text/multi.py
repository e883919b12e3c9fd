"""Several texts per image (captions, prompts, models, samples): select, embed, aggregate.

The texts come as a :class:`~llmvem.describe.base.Descriptions`, a DataFrame with ``image`` and ``text`` columns
(optional ``model``, ``prompt``, ``sample``), or a mapping image id → text or list of texts (e.g. the five COCO
captions of each image). :func:`embed_per_image` selects by model and prompt, embeds every text (cached per text)
and either averages the embeddings of each image (``aggregate="mean"``, the Doerig et al. recipe: the mean of the
five caption embeddings) or keeps one row per text (``aggregate="all"``).

>>> caps = {"img1": ["a dog on a sofa", "a brown dog resting"], "img2": ["a red bus"]}
>>> emb = embed_per_image(caps, encoder="minilm")  # doctest: +SKIP
>>> emb.values.shape, emb.ids, emb.n_texts.tolist()  # doctest: +SKIP
((2, 384), ['img1', 'img2'], [2, 1])
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmvem.errors import ConfigError, DataError, IdMismatchError
from llmvem.store import ArtifactStore
from llmvem.text.embed import _embed, check_texts
from llmvem.text.embeddings import TextEmbeddings
from llmvem.text.encoders import Policy, TextEncoder, load_text_encoder

log = logging.getLogger(__name__)

Aggregate = Literal["mean", "all"]
AGGREGATES: tuple[str, ...] = ("mean", "all")


def text_table(source: Any) -> pd.DataFrame:
    """The texts of ``source`` as a DataFrame with columns image, model, prompt, sample, text.

    Args:
        source: a :class:`~llmvem.describe.base.Descriptions`, a DataFrame with ``image`` (or ``id``) and ``text``
            columns, or a mapping image id → text or list of texts.

    Raises:
        DataError: a required column is missing, or the source is of an unknown type.
    """
    if hasattr(source, "to_frame") and hasattr(source, "records"):
        df = source.to_frame()
    elif isinstance(source, pd.DataFrame):
        df = source.copy()
        if "image" not in df.columns and "id" in df.columns:
            df = df.rename(columns={"id": "image"})
    elif isinstance(source, Mapping):
        rows: list[dict[str, Any]] = []
        for image, texts in source.items():
            items = [texts] if isinstance(texts, str) or not isinstance(texts, Sequence) else list(texts)
            rows.extend({"image": str(image), "text": t, "sample": s} for s, t in enumerate(items))
        df = pd.DataFrame(rows, columns=["image", "text", "sample"])
    else:
        raise DataError(
            f"texts must be Descriptions, a DataFrame or a mapping id → text(s); got {type(source).__name__}"
        )
    missing = [c for c in ("image", "text") if c not in df.columns]
    if missing:
        raise DataError(f"the table of texts needs columns 'image' and 'text'; missing {missing}")
    for col, default in (("model", ""), ("prompt", ""), ("sample", 0)):
        if col not in df.columns:
            df[col] = default
    df["image"] = df["image"].astype(str)
    return df.reset_index(drop=True)


def select_texts(
    source: Any,
    ids: Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    prompt: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """The rows of :func:`text_table` with the given model(s) and prompt(s), for ``ids`` in that order.

    Rows of one image keep their original order. ``ids=None`` keeps every image, in order of first appearance.

    Raises:
        DataError: no row has the model / prompt (the message lists the ones there are).
        IdMismatchError: some ids have no text after selection (the message names them).
    """
    df = text_table(source)
    for col, want in (("model", model), ("prompt", prompt)):
        if want is None:
            continue
        wanted = [want] if isinstance(want, str) else list(want)
        keep = df[col].isin(wanted)
        if not keep.any():
            there = sorted(map(str, df[col].unique()))
            raise DataError(f"no text has {col} {wanted}; the {col}s there are: {there[:20]}")
        df = df[keep]
    if ids is None:
        order = list(dict.fromkeys(df["image"]))
    else:
        order = [str(i) for i in ids]
        have = set(df["image"])
        missing = [i for i in order if i not in have]
        if missing:
            raise IdMismatchError(
                f"{len(missing)} of {len(order)} id(s) have no text"
                + (" with the selected model/prompt" if model is not None or prompt is not None else "")
                + f": {missing[:10]}"
                + (" ..." if len(missing) > 10 else "")
            )
        if len(set(order)) != len(order):
            raise DataError("ids contain duplicates; give each image once")
    rank = {i: k for k, i in enumerate(order)}
    df = df[df["image"].isin(rank)].copy()
    df["_rank"] = df["image"].map(rank)
    return df.sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)


def embed_per_image(
    source: Any,
    ids: Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    prompt: str | Sequence[str] | None = None,
    aggregate: Aggregate = "mean",
    encoder: str | TextEncoder = "minilm",
    normalize: bool = True,
    policy: Policy = "chunk",
    batch_size: int = 64,
    device: str = "cpu",
    store: ArtifactStore | None = None,
    progress: bool = True,
) -> TextEmbeddings:
    """Embed the texts of each image and aggregate them: the Doerig recipe is ``aggregate="mean"``.

    Args:
        source: see :func:`text_table`.
        ids: the images, in output order (default: all, in order of first appearance).
        model, prompt: keep only texts by these describer models / prompts (a name or a list).
        aggregate: ``"mean"``: one row per image, the mean of its texts' embeddings (each unit-normalised first
            when ``normalize``, and the mean normalised again); ``"all"``: one row per text, ids repeated.
        encoder, normalize, policy, batch_size, device, store, progress: as in
            :func:`~llmvem.text.embed.embed_texts`.

    Returns:
        :class:`TextEmbeddings` with values (n_images, d) or (n_texts, d) float32.

    Raises:
        DataError: bad texts (named by image id), unknown model/prompt; IdMismatchError: ids without texts.
    """
    if aggregate not in AGGREGATES:
        raise ConfigError(f"unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}")
    df = select_texts(source, ids=ids, model=model, prompt=prompt)
    if df.empty:
        raise DataError("no texts to embed")
    texts = check_texts(list(df["text"]), labels=list(df["image"]))
    if model is None and prompt is None and aggregate == "mean":
        combos = df[["model", "prompt"]].drop_duplicates()
        if len(combos) > 1:
            log.warning(
                "averaging texts of %d model/prompt combinations per image; pass model= / prompt= to select one",
                len(combos),
            )
    enc = load_text_encoder(encoder, device=device) if isinstance(encoder, str) else encoder
    emb, stats = _embed(texts, list(df["image"]), enc, normalize, policy, batch_size, device, store, progress)
    images = df["image"].tolist()
    if aggregate == "all":
        return TextEmbeddings(
            values=emb, ids=images, encoder=enc.name, n_texts=np.ones(len(images), dtype=np.int64),
            texts=texts, stats=stats.as_dict(),
        )  # fmt: skip
    order = list(dict.fromkeys(images))
    row = {i: k for k, i in enumerate(order)}
    owner = np.fromiter((row[i] for i in images), dtype=np.int64, count=len(images))
    counts = np.bincount(owner, minlength=len(order))
    sums = np.zeros((len(order), emb.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, emb.astype(np.float64))
    mean = sums / counts[:, None]
    if normalize:
        norms = np.linalg.norm(mean, axis=1, keepdims=True)
        mean = mean / np.where(norms > 0, norms, 1.0)
    return TextEmbeddings(
        values=mean.astype(np.float32), ids=order, encoder=enc.name, n_texts=counts, stats=stats.as_dict()
    )


def read_describe_store(store: ArtifactStore | None = None, clean: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Every description recorded by ``llmvem describe`` in the store's record logs, as a :func:`text_table`.

    Args:
        clean: cleaning steps applied to each text (``"preamble"``, ``"closing"``; see :mod:`llmvem.describe.clean`).
    Raises:
        DataError: the store holds no descriptions.
    """
    from llmvem.describe.export import iter_stored

    store = store if store is not None else ArtifactStore()
    rows: list[dict[str, Any]] = list(iter_stored(store, clean=clean))  # successful records; torn lines skipped
    if not rows:
        raise DataError(
            f"no descriptions in the store at {store.root} (run `llmvem describe` first, or pass a JSONL/CSV of texts)"
        )
    return text_table(pd.DataFrame(rows))


def descriptions_of_images(
    path: str | Path,
    ids: Sequence[str],
    model: str | Sequence[str] | None = None,
    prompt: str | Sequence[str] | None = None,
    missing: str = "fail",
    log: Any = None,
) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """The description rows (``read_text_table``, picked by ``model`` / ``prompt``) of the images ``ids``; a row
    naming an NSD or Algonauts 2023 file (``train-0001_nsd-00013.png``) describes its canonical id (``nsd-00014``).

    Returns:
        the rows of the kept images (columns ``image``, ``text`` …; several per image possible), the kept ids (in
        ``ids``' order) and the counts ``ignored_descriptions`` (rows naming other images) and
        ``dropped_no_description`` (images without a row, left out with ``missing="drop"``).
    Raises:
        DataError: images without a description (``missing="fail"``; the message says how to fix it).
    """
    from llmvem.describe.imported import read_text_table

    log = log or (lambda msg: None)
    from llmvem.data.nsd_ids import canonical_id

    df = select_texts(read_text_table(path), model=model, prompt=prompt)
    df["image"] = [canonical_id(str(i)) or i for i in df["image"]]  # NSD / Algonauts names, as the image ids
    described = set(df["image"])
    counts = {"ignored_descriptions": int((~df["image"].isin(set(ids))).sum()), "dropped_no_description": 0}
    if counts["ignored_descriptions"]:
        log(f"  {counts['ignored_descriptions']} description(s) name images not among the {len(ids)}: ignored")
    lacking = [i for i in ids if i not in described]
    if lacking and missing == "fail":
        raise DataError(
            f"{len(lacking)} of {len(ids)} image(s) have no description in {path}: {lacking[:10]}"
            + (" ..." if len(lacking) > 10 else "")
            + "; describe them (llmvem describe), or set missing_descriptions: drop to leave them out"
        )
    kept = [i for i in ids if i in described]
    if lacking:
        counts["dropped_no_description"] = len(lacking)
        log(f"  {len(lacking)} image(s) without a description left out (missing_descriptions: drop)")
    return df[df["image"].isin(set(kept))].reset_index(drop=True), kept, counts
