"""Which words does an image, a voxel, a ROI "say"?

- Images: the top-k readable tokens (:attr:`Vocabulary.readable`) of each row of (n, V) logits or probabilities
  (:func:`top_words`); or, for a bag-of-words head, the top-k *words* (:func:`top_words_merged`): the predicted
  distribution is read back as the targets were made, a word's weight shared by its tokens, so a word split into
  pieces (``skateboard`` = ``skate`` + ``##board``) is ranked as a word, and its first piece is not read out as a
  word of its own (``skate``) on the strength of the longer word's mass.
- Voxels: a ridge encoding model fit on PIF features X = P E (n × E) gives each voxel a weight vector w (E,); the
  predicted response is ``(p E) w + b = Σ_t p_t (e_t · w) + b``, so ``E w`` (V,) is the voxel's response per unit of
  probability on each token: its visual words are the tokens with the largest ``e_t · w`` (the words whose
  presence in an image's visual words drives the voxel most, according to the model).
- ROIs: the same for the mean of the ROI's voxel weight vectors, each scaled to unit length (so every voxel counts
  alike), optionally over the voxels predicted with held-out r above a threshold.
- Agreement with descriptions: precision@k of an image's top-k words against the content words of its own
  description, against a null of the same top-k lists paired with randomly permuted descriptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmvem.errors import DataError
from llmvem.visualwords.vocab import Vocabulary


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def candidate_mask(vocab: Vocabulary, allowed: np.ndarray | None = None) -> np.ndarray:
    """(V,) bool: readable tokens, optionally intersected with ``allowed`` (e.g. tokens seen in the targets)."""
    mask = vocab.readable.copy()
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        vocab.check_size(allowed.shape[0], "the candidate-token mask")
        mask &= allowed
    if not mask.any():
        raise DataError(f"vocabulary {vocab.name!r}: no readable candidate token to read words from")
    return mask


def top_words(scores: Any, vocab: Vocabulary, k: int = 10, allowed: np.ndarray | None = None) -> list[list[str]]:
    """The k highest-scoring readable words of each row.

    Args:
        scores: (n, V) logits, probabilities or any per-token scores (numpy or torch).
        allowed: optional (V,) bool restricting the candidates.
    Returns:
        n lists of k words (fewer if fewer candidates), best first; a word reached by two tokens appears once.
    """
    s = _as_numpy(scores)
    if s.ndim != 2:
        raise DataError(f"top words: scores must be (n, V), got shape {s.shape}")
    vocab.check_size(s.shape[1], "the scores")
    if k < 1:
        raise DataError(f"top words: k must be ≥ 1, got {k}")
    mask = candidate_mask(vocab, allowed)
    cand = np.flatnonzero(mask)
    words = vocab.words
    m = min(len(cand), 2 * k + 8)  # a few spare for duplicate words
    out = []
    for row in s:
        sub = np.asarray(row, dtype=np.float64)[cand]
        top = cand[np.argpartition(-sub, m - 1)[:m]] if m < len(cand) else cand
        top = top[np.argsort(-np.asarray(row, dtype=np.float64)[top], kind="stable")]
        seen: list[str] = []
        for t in top:
            w = words[t]
            if w not in seen:
                seen.append(w)
            if len(seen) == k:
                break
        out.append(seen)
    return out


def word_masses(
    logits: Any, vocab: Vocabulary, pieces: dict[str, Sequence[int]], allowed: np.ndarray | None = None
) -> tuple[list[str], np.ndarray]:
    """Each candidate word's share of the predicted distribution, read back as :class:`BagOfWordsTargets` made it.

    The targets give a word of m tokens weight W/m on each token. So a word of several pieces is given
    ``m · min_i p(piece_i)`` (what all its pieces can carry), and a readable token, read as a word by itself, keeps
    ``p(t)`` less what the multi-piece words took from it.

    Args:
        logits: (n, V) vocabulary logits (softmax is applied; numpy or torch).
        vocab: their vocabulary.
        pieces: word → token ids, e.g. :attr:`BagOfWordsTargets.pieces_` (the fitted texts' content words); words
            of one token are read from the readable tokens and may be left out here.
        allowed: optional (V,) bool restricting the single-token candidates (as in :func:`top_words`).
    Returns:
        ``(words, masses)``: the candidate words (readable tokens first, then multi-piece words) and their (n, W)
        float64 masses.
    """
    z = _as_numpy(logits).astype(np.float64)
    if z.ndim != 2:
        raise DataError(f"word masses: logits must be (n, V), got shape {z.shape}")
    vocab.check_size(z.shape[1], "the logits")
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    multi = [(w, np.asarray(ids, dtype=np.int64)) for w, ids in pieces.items() if len(ids) >= 2]
    cand = np.flatnonzero(candidate_mask(vocab, allowed))
    if not multi:
        return [vocab.words[t] for t in cand], p[:, cand]
    m = max(len(ids) for _, ids in multi)
    padded = np.stack([np.pad(ids, (0, m - len(ids)), mode="edge") for _, ids in multi])  # (M, m): repeats are harmless
    if padded.max() >= vocab.size or padded.min() < 0:
        raise DataError(f"word masses: token ids outside the vocabulary of {vocab.size} (pieces of another one?)")
    lengths = np.asarray([len(ids) for _, ids in multi], dtype=np.float64)
    per_piece = p[:, padded].min(2)  # (n, M): what each piece of the word carries
    taken = np.zeros((p.shape[1], p.shape[0]))  # (V, n): mass of each token claimed by multi-piece words
    w_idx = np.concatenate([np.full(len(ids), k) for k, (_, ids) in enumerate(multi)])
    t_idx = np.concatenate([ids for _, ids in multi])
    np.add.at(taken, t_idx, per_piece[:, w_idx].T)
    single = np.clip(p[:, cand] - taken[cand].T, 0.0, None)
    words = [vocab.words[t] for t in cand] + [w for w, _ in multi]
    return words, np.concatenate([single, per_piece * lengths], axis=1)


def top_words_merged(
    logits: Any, vocab: Vocabulary, pieces: dict[str, Sequence[int]], k: int = 10, allowed: np.ndarray | None = None
) -> list[list[str]]:
    """The k words with the largest :func:`word_masses` in each row (a word reached twice appears once).

    Returns:
        n lists of k words (fewer if fewer candidates), best first.
    """
    if k < 1:
        raise DataError(f"top words: k must be ≥ 1, got {k}")
    words, mass = word_masses(logits, vocab, pieces, allowed)
    m = min(mass.shape[1], 2 * k + 8)
    out = []
    for row in mass:
        top = np.argpartition(-row, m - 1)[:m] if m < len(row) else np.arange(len(row))
        top = top[np.argsort(-row[top], kind="stable")]
        seen: list[str] = []
        for j in top:
            if words[j] not in seen:
                seen.append(words[j])
            if len(seen) == k:
                break
        out.append(seen)
    return out


def precision_at_k(predicted: Sequence[Sequence[str]], references: Sequence[set[str]], k: int = 10) -> np.ndarray:
    """(n,) fraction of each image's first k predicted words found in its reference word set."""
    if len(predicted) != len(references):
        raise DataError(f"precision@k: {len(predicted)} predictions but {len(references)} references")
    return np.array([sum(w in ref for w in list(p)[:k]) / k for p, ref in zip(predicted, references, strict=True)])


@dataclass
class PrecisionResult:
    """precision@k of predicted words against the own descriptions and against shuffled descriptions.

    Attributes:
        k: list length; precision: mean over images; per_image: (n,);
        shuffled_mean, shuffled_sd: mean and SD over permutations of the mean precision with descriptions
            permuted across images; p_value: share of permutations at least as high as ``precision`` (+1 smoothing);
        n_images, n_shuffles.
    """

    k: int
    precision: float
    per_image: np.ndarray
    shuffled_mean: float
    shuffled_sd: float
    p_value: float
    n_images: int
    n_shuffles: int

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-able summary (``ratio`` = precision / shuffled_mean; None when the shuffled mean is 0)."""
        ratio = self.precision / self.shuffled_mean if self.shuffled_mean > 0 else None
        return {"k": self.k, "precision": self.precision, "shuffled_mean": self.shuffled_mean,
                "shuffled_sd": self.shuffled_sd, "ratio": ratio, "p_value": self.p_value, "n_images": self.n_images,
                "n_shuffles": self.n_shuffles}  # fmt: skip


def shuffled_precision(
    predicted: Sequence[Sequence[str]],
    references: Sequence[set[str]],
    k: int = 10,
    n_shuffles: int = 1000,
    seed: int = 0,
) -> PrecisionResult:
    """precision@k with its shuffled baseline: each permutation pairs every image's words with another image's
    description (a derangement is not enforced; with n images about one image in n keeps its own)."""
    own = precision_at_k(predicted, references, k)
    n = len(own)
    if n < 2:
        raise DataError("shuffled precision needs at least 2 images")
    vocab_words = sorted({w for p in predicted for w in list(p)[:k]})
    index = {w: j for j, w in enumerate(vocab_words)}
    hits = np.zeros((n, len(vocab_words)), dtype=bool)  # hits[i, w]: word w in reference i
    for i, ref in enumerate(references):
        for w in ref:
            j = index.get(w)
            if j is not None:
                hits[i, j] = True
    pred_idx = [np.array([index[w] for w in list(p)[:k]], dtype=np.int64) for p in predicted]
    rng = np.random.default_rng(seed)
    null = np.empty(n_shuffles)
    for s in range(n_shuffles):
        perm = rng.permutation(n)
        null[s] = np.mean([hits[perm[i], pred_idx[i]].sum() / k for i in range(n)])
    mean = float(own.mean())
    return PrecisionResult(k, mean, own, float(null.mean()), float(null.std(ddof=1)) if n_shuffles > 1 else 0.0,
                           float((1 + (null >= mean).sum()) / (1 + n_shuffles)), n, n_shuffles)  # fmt: skip


# ------------------------------------------------------------------------------------------------ brain
def token_scores(weights: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """``E W``: (V, v) score of every token for every column of ``weights`` (E, v) (see the module docstring)."""
    w = np.asarray(weights, dtype=np.float32)
    emb = np.asarray(embeddings, dtype=np.float32)
    if w.ndim == 1:
        w = w[:, None]
    if w.shape[0] != emb.shape[1]:
        raise DataError(
            f"encoding weights have {w.shape[0]} rows but the token embeddings are {emb.shape[1]}-d: fit the "
            "encoding model on PIF features of the same vocabulary"
        )
    return emb @ w


def voxel_words(
    weights: np.ndarray, vocab: Vocabulary, k: int = 10, allowed: np.ndarray | None = None, batch: int = 512
) -> list[list[str]]:
    """Top-k words of each voxel from its encoding weights on PIF features.

    Args:
        weights: (E, v) ridge coefficients (``RidgeEncoder.coef_``) fit on PIF features of ``vocab``.
    Returns:
        v lists of k words.
    """
    w = np.asarray(weights, dtype=np.float32)
    out: list[list[str]] = []
    for j in range(0, w.shape[1], batch):
        out.extend(top_words(token_scores(w[:, j : j + batch], vocab.embeddings).T, vocab, k, allowed))
    return out


def roi_weights(weights: np.ndarray, rois: Sequence[str], keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """ROI → the mean of its voxels' unit-length weight vectors (E,), over the voxels in ``keep`` (all if None)."""
    w = np.asarray(weights, dtype=np.float64)
    labels = np.asarray([str(r) for r in rois])
    if len(labels) != w.shape[1]:
        raise DataError(f"{len(labels)} ROI labels for {w.shape[1]} voxels")
    norms = np.linalg.norm(w, axis=0)
    unit = w / np.where(norms > 0, norms, 1.0)
    sel = np.ones(w.shape[1], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    out = {}
    for roi in dict.fromkeys(labels):
        m = (labels == roi) & sel & (norms > 0)
        if m.any():
            out[str(roi)] = unit[:, m].mean(1)
    return out


@dataclass
class BrainWords:
    """Visual words of voxels and ROIs (see :func:`brain_visual_words`).

    Attributes:
        voxel_words: v lists of k words; roi_words: ROI → k words; r: (v,) held-out Pearson r of the encoding model
        (NaN without a test split); n_voxels_used: ROI → voxels averaged.
    """

    voxel_words: list[list[str]]
    roi_words: dict[str, list[str]]
    r: np.ndarray
    n_voxels_used: dict[str, int] = field(default_factory=dict)
    coef: np.ndarray | None = None


def brain_visual_words(
    pif: np.ndarray,
    responses: np.ndarray,
    rois: Sequence[str],
    vocab: Vocabulary,
    k: int = 10,
    train_idx: np.ndarray | None = None,
    test_idx: np.ndarray | None = None,
    min_r: float = 0.0,
    allowed: np.ndarray | None = None,
    encoder: Any = None,
) -> BrainWords:
    """Fit a ridge encoding model from PIF features to voxels and read out voxel and ROI visual words.

    Args:
        pif: (n, E) PIF features of the stimuli (:func:`llmvem.visualwords.pif.pif_features`).
        responses: (n, v) voxel responses, rows as ``pif``.
        rois: (v,) ROI label of each voxel.
        train_idx, test_idx: stimuli to fit on and to score held-out r on (all / none by default).
        min_r: ROI words average only voxels with held-out r > ``min_r`` (all voxels without a test split).
        encoder: an unfitted ridge (default ``RidgeEncoder()``, α per voxel by GCV).
    """
    from llmvem.brain import RidgeEncoder, pearson_r

    x = np.asarray(pif, dtype=np.float32)
    y = np.asarray(responses, dtype=np.float32)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"brain visual words: {x.shape[0]} PIF rows but {y.shape[0]} response rows")
    if x.shape[1] != vocab.embedding_dim:
        raise DataError(
            f"brain visual words: the features are {x.shape[1]}-d but vocabulary {vocab.name!r} embeds tokens in "
            f"{vocab.embedding_dim} dimensions; pass PIF features of this vocabulary"
        )
    tr = np.arange(len(x)) if train_idx is None else np.asarray(train_idx)
    model = (encoder if encoder is not None else RidgeEncoder()).fit(x[tr], y[tr])
    coef = np.asarray(model.coef_, dtype=np.float32)
    if test_idx is not None and len(test_idx) > 2:
        r = np.asarray(pearson_r(y[test_idx], model.predict(x[test_idx])), dtype=np.float64)
        keep = np.nan_to_num(r, nan=-1.0) > min_r
    else:
        r = np.full(y.shape[1], np.nan)
        keep = None
    per_roi = roi_weights(coef, rois, keep)
    labels = np.asarray([str(v) for v in rois])
    used = {roi: int(((labels == roi) & (keep if keep is not None else True)).sum()) for roi in per_roi}
    roi_w = (
        top_words(token_scores(np.stack(list(per_roi.values()), 1), vocab.embeddings).T, vocab, k, allowed)
        if per_roi
        else []
    )
    return BrainWords(voxel_words(coef, vocab, k, allowed), dict(zip(per_roi, roi_w, strict=True)), r, used, coef)


def brain_words_summary(result: BrainWords, rois: Sequence[str], n_voxels: int = 30) -> dict[str, Any]:
    """JSON-able summary of :func:`brain_visual_words`: ROI words and the ``n_voxels`` best-predicted voxels' words
    (all voxels by index when there is no held-out r)."""
    labels = [str(r) for r in rois]
    r = np.asarray(result.r, dtype=np.float64)
    order = np.argsort(-np.nan_to_num(r, nan=-np.inf), kind="stable") if np.isfinite(r).any() else np.arange(len(r))
    return {
        "rois": {
            roi: {"words": w, "n_voxels": result.n_voxels_used.get(roi, 0)} for roi, w in result.roi_words.items()
        },
        "voxels": [
            {
                "voxel": int(j),
                "roi": labels[j],
                "r": float(r[j]) if np.isfinite(r[j]) else None,
                "words": result.voxel_words[j],
            }
            for j in order[:n_voxels]
        ],
    }


def description_brain_words(
    texts: Sequence[str],
    ids: Sequence[str],
    responses: np.ndarray,
    rois: Sequence[str],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    vocabulary: str = "minilm",
    k: int = 10,
    encoder: Any = None,
) -> dict[str, Any]:
    """Voxel and ROI words of the descriptions' own visual words: each image's bag of words (tf) → PIF features →
    ridge → :func:`brain_words_summary`; candidates are the tokens that occur in the descriptions.

    Args:
        texts, ids: one description per stimulus (rows of ``responses``), and the stimulus ids (for errors).
        responses: (n, v) voxel responses; rois: (v,) ROI labels; train_idx, test_idx: stimulus indices.
    """
    from llmvem.visualwords.pif import pif_features
    from llmvem.visualwords.targets import bag_of_words
    from llmvem.visualwords.vocab import load_vocabulary

    vocab = load_vocabulary(vocabulary)
    bow = bag_of_words(texts, vocab, ids=ids)
    pif = pif_features(bow, vocab.embeddings, probabilities=True)
    res = brain_visual_words(pif, responses, rois, vocab, k, train_idx, test_idx, allowed=bow.sum(0) > 0,
                             encoder=encoder)  # fmt: skip
    return {
        "source": "Visual words of the descriptions (bag of words → PIF features), mapped to voxels by ridge.",
        "vocabulary": vocab.name,
        "vocabulary_size": vocab.size,
        "k": k,
        **brain_words_summary(res, rois),
    }
