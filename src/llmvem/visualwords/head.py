"""The vocabulary head (VW-LMM's "visual modelling head"): ``Linear(feature → V)``, logits over a vocabulary.

Initialisation (``init``):

- ``"random"``: PyTorch's default ``nn.Linear`` initialisation.
- ``"embeddings"``: the rows are the token-embedding matrix E (V × E), so a feature scores each token by its dot
  product with the token's embedding (tied weights, as an LM head tied to its input embeddings). When the feature
  dimension D differs from E, the rows are ``E Q`` with Q (E × D) a fixed random matrix with orthonormal rows
  (D ≥ E: the feature is read through a random isometry into token-embedding space, and ``W Wᵀ = E Eᵀ`` keeps the
  tokens' geometry exactly) or orthonormal columns (D < E: a random D-dimensional slice of that geometry). Q is drawn
  from ``seed``; the rows then keep the norms of E (D ≥ E).

The bias starts at zero, or at ``log prior`` (``prior``: a (V,) distribution, e.g. the mean training target), so the
untrained head already predicts the vocabulary's base rates and training learns what each image adds to them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from llmvem.errors import ConfigError, DataError

HeadInit = Literal["random", "embeddings"]
HEAD_INITS = ("random", "embeddings")


def embedding_init(embeddings: np.ndarray, in_dim: int, seed: int = 0) -> np.ndarray:
    """Weights (V, in_dim) float32 from token embeddings (V, E): E itself when in_dim == E, else ``E Q`` (see
    the module docstring)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    e = emb.shape[1]
    if in_dim == e:
        return emb.astype(np.float32)
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((max(e, in_dim), min(e, in_dim)))
    q, _ = np.linalg.qr(g)  # orthonormal columns, (max, min)
    q = q.T if e < in_dim else q  # (E, D): orthonormal rows when E < D, columns when E > D
    return (emb @ q).astype(np.float32)


def vocab_head(
    in_dim: int,
    vocab_size: int,
    init: HeadInit = "random",
    embeddings: np.ndarray | None = None,
    prior: np.ndarray | None = None,
    seed: int = 0,
) -> Any:
    """A ``torch.nn.Linear(in_dim, vocab_size)`` vocabulary head: (B, in_dim) features → (B, V) logits.

    Args:
        init: ``"random"`` or ``"embeddings"`` (needs ``embeddings`` (V, E)).
        prior: optional (V,) distribution; the bias starts at ``log(prior + 1e-8)``.
        seed: seed of the random map Q when in_dim ≠ E.
    Raises:
        DataError: ``embeddings`` or ``prior`` do not have V rows (tokenizer / head mismatch).
    """
    import torch
    from torch import nn

    if init not in HEAD_INITS:
        raise ConfigError(f"unknown vocabulary-head init {init!r}; choose one of {', '.join(HEAD_INITS)}")
    head = nn.Linear(in_dim, vocab_size)
    with torch.no_grad():
        if init == "embeddings":
            if embeddings is None:
                raise ConfigError("vocabulary-head init 'embeddings' needs the token-embedding matrix")
            if embeddings.shape[0] != vocab_size:
                raise DataError(
                    f"vocabulary mismatch: the token-embedding matrix has {embeddings.shape[0]} rows but the head "
                    f"has {vocab_size} outputs"
                )
            head.weight.copy_(torch.from_numpy(embedding_init(embeddings, in_dim, seed)))
        head.bias.zero_()
        if prior is not None:
            p = np.asarray(prior, dtype=np.float64).reshape(-1)
            if p.shape[0] != vocab_size:
                raise DataError(
                    f"vocabulary mismatch: the prior has {p.shape[0]} entries for a {vocab_size}-token head"
                )
            head.bias.copy_(torch.from_numpy(np.log(p / max(p.sum(), 1e-30) + 1e-8).astype(np.float32)))
    return head
