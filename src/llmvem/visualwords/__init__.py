"""Visual words (VW-LMM): images, voxels and ROIs as distributions over a language model's vocabulary.

- :mod:`~llmvem.visualwords.vocab`: :class:`Vocabulary` (tokenizer, token ↔ word, subword merging, stop words,
  token-embedding matrix), :func:`load_vocabulary` (default ``"minilm"``: 30,522 WordPiece tokens, 384-d).
- :mod:`~llmvem.visualwords.targets`: :class:`BagOfWordsTargets` — descriptions → (n, V) token distributions.
- :mod:`~llmvem.visualwords.autoregressive`: LLaVA-style splicing, VW-LMM's shifted / masked KL,
  :func:`visual_words_lm` (projector + causal LM + vocabulary head).
- :mod:`~llmvem.visualwords.head`: :func:`vocab_head` — Linear(feature → V), optionally from the token embeddings.
- :mod:`~llmvem.visualwords.pif`: :func:`pif_features` — softmax(logits) @ E, features made of text embeddings.
- :mod:`~llmvem.visualwords.readout`: top-k words per image / voxel / ROI, precision@k against shuffled descriptions.

The alignment loss ``"visual_words"`` (KL(target ‖ softmax(logits))) is in :data:`llmvem.align.ALIGN_LOSSES`; with
``finetune.loss: visual_words`` the fine-tuning experiment trains a vocabulary head on the descriptions' bag of
words; :mod:`llmvem.align.words` reads that head of a run directory (``llmvem words``, ``llmvem features
--pif``). torch and transformers are imported only inside the functions that use them.
"""

from llmvem.visualwords.head import vocab_head
from llmvem.visualwords.pif import pif_features
from llmvem.visualwords.readout import (
    BrainWords,
    PrecisionResult,
    brain_visual_words,
    precision_at_k,
    shuffled_precision,
    top_words,
    top_words_merged,
    voxel_words,
    word_masses,
)
from llmvem.visualwords.targets import BagOfWordsTargets, bag_of_words
from llmvem.visualwords.vocab import VOCABULARIES, Vocabulary, load_vocabulary

__all__ = [
    "VOCABULARIES",
    "BagOfWordsTargets",
    "BrainWords",
    "PrecisionResult",
    "Vocabulary",
    "bag_of_words",
    "brain_visual_words",
    "load_vocabulary",
    "pif_features",
    "precision_at_k",
    "shuffled_precision",
    "top_words",
    "top_words_merged",
    "vocab_head",
    "voxel_words",
    "word_masses",
]
