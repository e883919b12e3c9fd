"""Embed stage: text encoders (registry), cached text embeddings, several texts per image, control representations.

>>> from llmvem.text import embed_texts, embed_per_image  # doctest: +SKIP
>>> emb = embed_texts(["a red apple", "a banana"], encoder="minilm")  # (2, 384) float32, unit rows  # doctest: +SKIP
>>> caps = embed_per_image({"img1": ["a dog", "a brown dog"]}, encoder="mpnet")  # mean of 2 captions  # doctest: +SKIP

Encoders: ``"minilm"`` (default, offline), ``"mpnet"``, ``"sentence-transformers:<ref>"``, ``"clip"``,
``"clip:<ref>"``, ``"open_clip:<ref>"``, ``"glove"``, ``"glove-nouns"`` / ``-verbs`` / ``-adjectives`` /
``-adverbs`` / ``-prepositions``. Heavy libraries (torch, transformers, spaCy, open_clip) load on first use.
"""

from llmvem.text import clip as clip
from llmvem.text import words as words
from llmvem.text.clip import HFClipTextEncoder, OpenClipTextEncoder, clip_text_encoder, open_clip_text_encoder
from llmvem.text.controls import category_strings, multi_hot, scramble_words
from llmvem.text.embed import EMBEDDINGS_KIND, check_texts, embed_descriptions, embed_texts, embed_to_file
from llmvem.text.encoders import (
    POLICIES,
    TEXT_ENCODERS,
    EmbedStats,
    Policy,
    SentenceTransformerEncoder,
    TextEncoder,
    load_text_encoder,
    sentence_spans,
    sentence_transformer_encoder,
)
from llmvem.text.multi import (
    AGGREGATES,
    TextEmbeddings,
    embed_per_image,
    read_describe_store,
    select_texts,
    text_table,
)
from llmvem.text.words import FALLBACK_WORD, POS_TAGS, WordAverageEncoder, glove_6b_50d, words_by_pos, words_of

__all__ = [
    "AGGREGATES",
    "EMBEDDINGS_KIND",
    "FALLBACK_WORD",
    "POLICIES",
    "POS_TAGS",
    "TEXT_ENCODERS",
    "EmbedStats",
    "HFClipTextEncoder",
    "OpenClipTextEncoder",
    "Policy",
    "SentenceTransformerEncoder",
    "TextEmbeddings",
    "TextEncoder",
    "WordAverageEncoder",
    "category_strings",
    "check_texts",
    "clip_text_encoder",
    "embed_descriptions",
    "embed_per_image",
    "embed_texts",
    "embed_to_file",
    "glove_6b_50d",
    "load_text_encoder",
    "multi_hot",
    "open_clip_text_encoder",
    "read_describe_store",
    "scramble_words",
    "select_texts",
    "sentence_spans",
    "sentence_transformer_encoder",
    "text_table",
    "words_by_pos",
    "words_of",
]
