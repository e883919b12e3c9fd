"""PIF features (VW-LMM's "pure input feature" variant): an image as its visual-word distribution times the
token-embedding matrix, ``softmax(vm_head(v) / τ) @ E`` — a point in token-embedding space, made of text alone.

They are ordinary (n, E) float32 features: use them for encoding (:class:`llmvem.brain.RidgeEncoder`), RSA
(:func:`llmvem.brain.compute_rdm`) or anything else that takes features. Because they are linear in the
distribution, a linear model on them is linear in the visual words: ``(p E) w = Σ_t p_t (e_t · w)``, which is what
:func:`llmvem.visualwords.readout.voxel_words` reads out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmvem.errors import DataError


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of (n, V) logits / τ, float32 (computed in float64 for stability)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32)


def pif_features(
    logits: Any,
    embeddings: np.ndarray,
    temperature: float = 1.0,
    probabilities: bool = False,
    batch_size: int = 256,
) -> np.ndarray:
    """``softmax(logits / τ) @ E``: (n, E) float32.

    Args:
        logits: (n, V) vocabulary-head logits (numpy or torch), or probabilities with ``probabilities=True``.
        embeddings: (V, E) token-embedding matrix.
        temperature: softmax temperature τ (> 0).
    Raises:
        DataError: the logits and the embedding matrix are over vocabularies of different sizes.
    """
    if hasattr(logits, "detach"):
        logits = logits.detach().float().cpu().numpy()
    x = np.asarray(logits)
    emb = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise DataError(f"PIF features: logits must be (n, V), got shape {x.shape}")
    if x.shape[1] != emb.shape[0]:
        raise DataError(
            f"vocabulary mismatch: the logits are over {x.shape[1]} tokens but the token-embedding matrix has "
            f"{emb.shape[0]} rows"
        )
    if temperature <= 0:
        raise DataError(f"PIF features: temperature must be > 0, got {temperature}")
    out = np.empty((len(x), emb.shape[1]), dtype=np.float32)
    for i in range(0, len(x), batch_size):
        p = (
            np.asarray(x[i : i + batch_size], dtype=np.float32)
            if probabilities
            else softmax(x[i : i + batch_size], temperature)
        )
        out[i : i + batch_size] = p @ emb
    return out
