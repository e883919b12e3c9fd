"""Held-out visual words of a network trained with a vocabulary head (``finetune.loss: visual_words``): each seed's
top-k words against the images' own descriptions (precision@k), shuffled descriptions and the training prior."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class VisualWordsSetup:
    """The visual-words readout of one model (``finetune.loss: visual_words``; the runner's ``word_readout``):
    vocabulary, the bag-of-words targets fitted on the training descriptions
    (:class:`~llmvem.visualwords.targets.BagOfWordsTargets`), and each seed's vocabulary logits (n, V) on the
    held-out training images and on a second image set (the 92 objects)."""

    vocab: Any
    bow: Any
    seeds: list[int] = field(default_factory=list)
    val_logits: list[np.ndarray] = field(default_factory=list)
    obj_logits: list[np.ndarray] = field(default_factory=list)

    def multi_piece_words(self) -> dict[str, list[int]]:
        """The training descriptions' content words of several tokens → their token ids."""
        return {w: list(ids) for w, ids in self.bow.pieces_.items() if len(ids) > 1}

    def add_seed(self, seed: int, val_logits: np.ndarray, obj_logits: np.ndarray) -> None:
        self.seeds.append(seed)
        self.val_logits.append(val_logits)
        self.obj_logits.append(obj_logits)

    def readout(
        self, val_texts: list[str], val_files: list[str], obj_files: list[str], obj_texts: list[str],
        prior: np.ndarray, k: int, n_shuffles: int,
    ) -> dict[str, Any]:  # fmt: skip
        """Held-out precision@k (per seed, and the mean) against shuffled descriptions and against the training
        prior's top-k, the same on the 92 objects (their own descriptions: out of the training distribution);
        example words of held-out images and the words of the 92 objects (first seed)."""
        from llmvem.visualwords import precision_at_k, shuffled_precision
        from llmvem.visualwords import top_words_merged as merged
        from llmvem.visualwords.vocab import content_word_sets

        def top_words(logits: np.ndarray, vocab: Any, k: int) -> list[list[str]]:  # words as the targets made them
            return merged(logits, vocab, self.bow.pieces_, k)

        refs = content_word_sets(self.vocab, val_texts)
        per_seed, first_words = {}, None
        for seed, logits in zip(self.seeds, self.val_logits, strict=True):
            w = top_words(logits, self.vocab, k)
            first_words = first_words or w
            per_seed[f"seed{seed}"] = shuffled_precision(w, refs, k, n_shuffles, seed=seed).as_dict()
        keys = ("precision", "shuffled_mean", "shuffled_sd", "ratio", "p_value")
        mean = _mean_over_seeds(per_seed, keys)
        prior_words = top_words(np.log(np.maximum(prior, 1e-12))[None], self.vocab, k)[0]  # probabilities → logits
        prior_p = float(precision_at_k([prior_words] * len(refs), refs, k).mean())
        assert first_words is not None
        heldout = [{"image": f, "words": w, "in_description": [x for x in w if x in r], "n_description_words": len(r)}
                   for f, w, r in list(zip(val_files, first_words, refs, strict=True))[:25]]  # fmt: skip
        obj_refs = content_word_sets(self.vocab, obj_texts)
        obj_seeds = {f"seed{seed}": shuffled_precision(top_words(x, self.vocab, k), obj_refs, k, n_shuffles,
                                                       seed=seed).as_dict()
                     for seed, x in zip(self.seeds, self.obj_logits, strict=True)}  # fmt: skip
        obj_mean = _mean_over_seeds(obj_seeds, keys)
        return {
            "vocabulary": self.vocab.name,
            "vocabulary_size": self.vocab.size,
            "weighting": self.bow.weighting,
            "k": k,
            "n_heldout": len(refs),
            "precision": {**per_seed, "mean": mean},
            "prior_words": prior_words,
            "prior_precision": prior_p,
            "objects92_precision": {**obj_seeds, "mean": obj_mean},
            "objects92_prior_precision": float(precision_at_k([prior_words] * len(obj_refs), obj_refs, k).mean()),
            "heldout": heldout,
            "images": dict(zip(obj_files, top_words(self.obj_logits[0], self.vocab, k), strict=True)),
        }


def _mean_over_seeds(per_seed: dict[str, dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float | None]:
    """Mean of each key over seeds (None where no seed has a value)."""
    out: dict[str, float | None] = {}
    for key in keys:
        values = [r[key] for r in per_seed.values() if r.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out
