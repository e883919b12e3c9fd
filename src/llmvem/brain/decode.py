"""Decoding: brain → embedding ridge, identification accuracy, caption retrieval, text → brain maps.

Doerig et al. (2025): a ridge map from visual-ROI voxels to the caption embedding, scored by the Pearson r of the
predicted with the true embedding and by identification among the test images; the caption is the nearest neighbour
of the predicted embedding in a large caption corpus; and the encoding model run backwards in the other sense —
embedding new sentences and predicting their voxel maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from llmvem.brain.metrics import pearson_r_rows
from llmvem.brain.ridge import DEFAULT_ALPHAS, RidgeEncoder
from llmvem.errors import DataError

Similarity = Literal["correlation", "cosine"]


def _unit_rows(x: np.ndarray, centre: bool, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise DataError(f"{what}: expected a 2-D (items, dims) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{what}: contains NaN/inf")
    if centre:
        a = a - a.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    zero = norm[:, 0] == 0
    if zero.any():
        raise DataError(f"{what}: rows {np.flatnonzero(zero)[:10].tolist()} are constant; similarity is undefined")
    return a / norm


def similarity_matrix(a: np.ndarray, b: np.ndarray, metric: Similarity | str = "correlation") -> np.ndarray:
    """(m_a, m_b) Pearson correlation or cosine similarity of every row of ``a`` with every row of ``b``."""
    if metric not in ("correlation", "cosine"):
        raise DataError(f"similarity_matrix: metric must be 'correlation' or 'cosine', got {metric!r}")
    centre = metric == "correlation"
    ua, ub = _unit_rows(a, centre, "similarity_matrix (a)"), _unit_rows(b, centre, "similarity_matrix (b)")
    if ua.shape[1] != ub.shape[1]:
        raise DataError(f"similarity_matrix: a has {ua.shape[1]} dims but b has {ub.shape[1]}")
    return ua @ ub.T


@dataclass(frozen=True)
class Identification:
    """Identification of each item among all candidates by similarity.

    Attributes:
        accuracy: mean over items of the fraction of other candidates less similar than the true one (0.5 = chance,
            1 = perfect; the pairwise identification accuracy of the decoding literature).
        top1: fraction of items whose true candidate is the most similar.
        ranks: (m,) 1-based rank of the true candidate (1 = best).
    """

    accuracy: float
    top1: float
    ranks: np.ndarray


def identification_accuracy(
    predicted: np.ndarray, targets: np.ndarray, metric: Similarity | str = "correlation"
) -> Identification:
    """Rank of the true item among all candidates.

    Args:
        predicted: (m, d) predictions (e.g. embeddings decoded from the brain).
        targets: (m, d) true items in the same order; all m are the candidates.
        metric: ``"correlation"`` or ``"cosine"``.
    Returns:
        :class:`Identification`.
    """
    p, t = np.asarray(predicted), np.asarray(targets)
    if p.shape != t.shape:
        raise DataError(f"identification_accuracy: predicted {p.shape} and targets {t.shape} must have the same shape")
    if p.ndim != 2 or p.shape[0] < 2:
        raise DataError(f"identification_accuracy: need (m ≥ 2, d) arrays, got {p.shape}")
    sim = similarity_matrix(p, t, metric)
    true = np.diag(sim)
    better = (sim > true[:, None]).sum(axis=1)
    worse = (sim < true[:, None]).sum(axis=1)
    m = sim.shape[0]
    return Identification(accuracy=float((worse / (m - 1)).mean()), top1=float((better == 0).mean()), ranks=better + 1)


@dataclass(frozen=True)
class Retrieval:
    """Nearest captions of each query.

    Attributes:
        indices: (m, k) corpus indices, most similar first.
        scores: (m, k) their similarities.
        texts: m lists of k captions.
    """

    indices: np.ndarray
    scores: np.ndarray
    texts: list[list[str]]


def retrieve_captions(
    queries: np.ndarray,
    corpus_embeddings: np.ndarray,
    corpus_texts: Sequence[str],
    *,
    k: int = 1,
    metric: Similarity | str = "cosine",
    batch: int = 4096,
) -> Retrieval:
    """The ``k`` captions of a corpus closest to each query embedding (exact search, in corpus batches).

    Args:
        queries: (m, d) e.g. embeddings decoded from the brain.
        corpus_embeddings: (c, d) caption embeddings.
        corpus_texts: c captions.
        k: neighbours per query (≤ c).
        metric: ``"cosine"`` or ``"correlation"``.
        batch: corpus rows per similarity block.
    Returns:
        :class:`Retrieval`.
    """
    c = np.asarray(corpus_embeddings)
    if c.ndim != 2 or len(corpus_texts) != c.shape[0]:
        raise DataError(
            f"retrieve_captions: {len(corpus_texts)} captions for corpus embeddings of shape {c.shape}; they must match"
        )
    if not 1 <= k <= c.shape[0]:
        raise DataError(f"retrieve_captions: k must be in [1, {c.shape[0]}], got {k}")
    q = np.asarray(queries)
    best_s = np.full((q.shape[0], 0), -np.inf)
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    for start in range(0, c.shape[0], batch):
        sim = similarity_matrix(q, c[start : start + batch], metric)
        s = np.concatenate([best_s, sim], axis=1)
        i = np.concatenate([best_i, np.arange(start, start + sim.shape[1])[None, :].repeat(q.shape[0], 0)], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return Retrieval(best_i, best_s, [[str(corpus_texts[j]) for j in row] for row in best_i])


def decoded_captions(
    queries: np.ndarray,
    corpus_embeddings: np.ndarray,
    corpus_texts: Sequence[str],
    corpus_ids: Sequence[str],
    query_ids: Sequence[str],
    *,
    exclude_own: bool = True,
    metric: Similarity | str = "cosine",
) -> list[str]:
    """The caption decoded for each query: its nearest corpus caption, not one of the query stimulus's own.

    With ``exclude_own`` a corpus caption whose id is the query's stimulus id is skipped, so a caption metric
    scored against that stimulus's human captions cannot be won by returning one of them.

    Args:
        queries: (m, d) decoded embeddings.
        corpus_embeddings: (c, d).
        corpus_texts: c captions.
        corpus_ids: c stimulus ids (the stimulus a caption describes).
        query_ids: m stimulus ids.
        exclude_own: skip the stimulus's own captions.
        metric: as :func:`retrieve_captions`.
    Returns:
        m captions.
    Raises:
        DataError: lengths disagree, or every corpus caption belongs to the query's stimulus.
    """
    from collections import Counter

    if len(corpus_ids) != len(corpus_texts) or len(query_ids) != np.asarray(queries).shape[0]:
        raise DataError("decoded_captions: ids and texts/queries differ in length")
    own = Counter(str(i) for i in corpus_ids) if exclude_own else Counter()
    k = min(len(corpus_texts), 1 + max((own[str(q)] for q in query_ids), default=0))
    ret = retrieve_captions(queries, corpus_embeddings, corpus_texts, k=k, metric=metric)
    out = []
    for q, row in zip(query_ids, ret.indices, strict=True):
        pick = next((j for j in row if not exclude_own or str(corpus_ids[j]) != str(q)), None)
        if pick is None:
            raise DataError(f"decoded_captions: every corpus caption describes stimulus {q!r}; nothing else to pick")
        out.append(str(corpus_texts[pick]))
    return out


@dataclass(frozen=True)
class CaptionCorpus:
    """A caption corpus: c captions, the stimulus each describes (ids may repeat) and their (c, d) embeddings.

    Example
    -------
    >>> corpus = CaptionCorpus(["a", "a", "b"], ["a dog", "one dog", "a car"], np.array([[1.0, 0], [1, 0.1], [0, 1]]))
    >>> corpus.references()
    {'a': ['a dog', 'one dog'], 'b': ['a car']}
    >>> ret = corpus.retrieve(np.array([[1.0, 0.05], [0.9, 0.2]]), k=1)
    >>> ret.texts, corpus.own_in_top_k(ret, ["a", "b"])
    ([['one dog'], ['one dog']], 0.5)
    """

    ids: list[str]
    texts: list[str]
    embeddings: np.ndarray

    def references(self) -> dict[str, list[str]]:
        """Stimulus id → its captions in the corpus, in corpus order."""
        refs: dict[str, list[str]] = {}
        for cid, text in zip(self.ids, self.texts, strict=True):
            refs.setdefault(cid, []).append(text)
        return refs

    def retrieve(self, queries: np.ndarray, *, k: int = 1, metric: Similarity | str = "cosine") -> Retrieval:
        """The ``k`` nearest captions of each (m, d) query (:func:`retrieve_captions`)."""
        return retrieve_captions(queries, self.embeddings, self.texts, k=k, metric=metric)

    def own_in_top_k(self, retrieval: Retrieval, query_ids: Sequence[str]) -> float | None:
        """Retrieval accuracy at k: the fraction of queries with a caption of their own in the corpus that have one
        among their k retrieved captions (``None`` when no query has a caption of its own)."""
        have = set(self.ids)
        hits = [any(self.ids[j] == q for j in row) for q, row in zip(query_ids, retrieval.indices, strict=True)
                if q in have]  # fmt: skip
        return float(np.mean(hits)) if hits else None

    def decoded(
        self, queries: np.ndarray, query_ids: Sequence[str], *, exclude_own: bool = True,
        metric: Similarity | str = "cosine",
    ) -> list[str]:  # fmt: skip
        """The caption decoded for each query (:func:`decoded_captions`)."""
        return decoded_captions(queries, self.embeddings, self.texts, self.ids, query_ids, exclude_own=exclude_own,
                                metric=metric)  # fmt: skip


@dataclass
class DecodingResult:
    """A brain → embedding decoder evaluated on held-out stimuli.

    Attributes:
        model: the fitted :class:`RidgeEncoder` (voxels → embedding dims).
        predicted: (m, d) decoded embeddings of the test stimuli.
        r: (m,) Pearson r of each decoded embedding with the true one.
        identification: :class:`Identification` among the test stimuli.
    """

    model: RidgeEncoder
    predicted: np.ndarray
    r: np.ndarray
    identification: Identification

    def scores(self) -> dict[str, float]:
        """The scores of one decoder: ``identification_accuracy`` (chance 0.5), ``top1`` beside ``top1_chance``
        (1 / m), ``mean_r`` (the mean over test stimuli of the decoded-vs-true Pearson r, NaN rows left out)."""
        ident = self.identification
        return {"identification_accuracy": ident.accuracy, "top1": ident.top1,
                "top1_chance": 1.0 / len(self.predicted), "mean_r": float(np.nanmean(self.r))}  # fmt: skip


def fit_decoder(
    brain_train: np.ndarray,
    emb_train: np.ndarray,
    brain_test: np.ndarray,
    emb_test: np.ndarray,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    alpha_per_target: bool = False,
    **ridge_kwargs: Any,
) -> DecodingResult:
    """Ridge from voxels to embedding dimensions (kernel form is automatic when voxels > stimuli), then score it.

    Args:
        brain_train: (n, v) responses of the training stimuli.
        emb_train: (n, d) their embeddings.
        brain_test: (m, v) responses of the test stimuli.
        emb_test: (m, d) their embeddings.
        alphas: candidate penalties.
        alpha_per_target: one α per embedding dim (default: one shared α, as the dims form one vector).
        ridge_kwargs: more :class:`RidgeEncoder` parameters (``cv``, ``dtype``, ``backend`` ...).
    Returns:
        :class:`DecodingResult`.
    """
    bt, et = np.asarray(brain_train), np.asarray(emb_train)
    if bt.ndim != 2 or et.ndim != 2 or bt.shape[0] != et.shape[0]:
        raise DataError(f"fit_decoder: brain_train {bt.shape} and emb_train {et.shape} must be (n, v) and (n, d)")
    bs, es = np.asarray(brain_test), np.asarray(emb_test)
    if bs.ndim != 2 or es.ndim != 2 or bs.shape[0] != es.shape[0] or bs.shape[1] != bt.shape[1]:
        raise DataError(
            f"fit_decoder: brain_test {bs.shape} and emb_test {es.shape} must be (m, {bt.shape[1]}) and (m, d)"
        )
    model = RidgeEncoder(alphas=tuple(alphas), alpha_per_target=alpha_per_target, **ridge_kwargs).fit(bt, et)
    pred = np.asarray(model.predict(bs), dtype=np.float64)
    return DecodingResult(model, pred, pearson_r_rows(pred, es), identification_accuracy(pred, es))


def text_to_brain(encoder: RidgeEncoder, sentence_embeddings: np.ndarray) -> np.ndarray:
    """Predicted voxel maps of new sentences with an encoding model fitted on caption embeddings.

    Args:
        encoder: a :class:`RidgeEncoder` fitted from embeddings (n, d) to voxels (n, v).
        sentence_embeddings: (m, d) embeddings of new sentences, same encoder as in training.
    Returns:
        (m, v) predicted maps.
    """
    return np.atleast_2d(np.asarray(encoder.predict(np.asarray(sentence_embeddings)), dtype=np.float64))


def contrast_maps(maps: np.ndarray, groups: Sequence[str], a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean map of group ``a`` minus group ``b`` and its Welch t statistic per voxel (e.g. people vs places).

    Args:
        maps: (m, v) predicted maps.
        groups: m labels.
        a, b: the two labels to contrast (≥ 2 maps each).
    Returns:
        difference (v,), t (v,).
    """
    x = np.asarray(maps, dtype=np.float64)
    g = np.asarray([str(s) for s in groups])
    if x.ndim != 2 or g.shape[0] != x.shape[0]:
        raise DataError(f"contrast_maps: {g.shape[0]} labels for maps of shape {x.shape}")
    xa, xb = x[g == a], x[g == b]
    if xa.shape[0] < 2 or xb.shape[0] < 2:
        raise DataError(f"contrast_maps: need ≥ 2 maps per group, got {xa.shape[0]} {a!r} and {xb.shape[0]} {b!r}")
    diff = xa.mean(0) - xb.mean(0)
    se = np.sqrt(xa.var(0, ddof=1) / xa.shape[0] + xb.var(0, ddof=1) / xb.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, diff / np.where(se > 0, se, 1.0), 0.0)
    return diff, t
